"""Names that become file or directory names, and the one 'did you mean' every error message uses."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from cellfeatures.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str, what: str) -> str:
    """A name that becomes a directory or file name: letters, digits, `_ . -`; never a path (`../x`, `/x`)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '.', '-' (it names a directory; "
            f"paths such as '../x' or '/x' would escape the root)"
        )
    return name


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """` (did you mean 'x'?)` when a known name is close to `name`, else an empty string.

    The one spelling-hint helper: every "unknown X" message in the project ends with it.
    """
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""
