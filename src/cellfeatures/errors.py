"""The exception tree of cellfeatures, in one place.

CellFeaturesError            base of everything raised on purpose
├── ConfigError              a config file or value is wrong (names the key)
├── SourceError              a table cannot be read from a source
│   ├── TableNotFoundError   the source has no such table
│   ├── CaveAuthError        the CAVE server refused the token
│   └── IncompleteFetchError a fetch could not prove it got every row
├── ExecutionError           the Dask engine cannot run the plan (scheduler, workers, scratch)
├── LeakageError             a dataset's features would reveal its label
├── ModelIntegrityError      a saved model does not match its sidecar (checksum, dataset, features)
├── SchemaError              collected data violates a pandera model (names table, column, rows)
├── IdentityError            nucleus_id <-> root_id bookkeeping is inconsistent
└── StoreError               the feature store cannot build, find or load a version
    ├── VersionNotFoundError
    ├── DamagedVersionError  a published version's files or manifest no longer match
    └── DamagedDatasetError  a dataset's files or card.json no longer match

Every message names what the user has to look at: the table, the column, the file, the version.
"""

from __future__ import annotations

import errno

# How the engine (polars, Rust) spells the operating system's errors inside its own exception text.
ENGINE_OS_ERRORS = {
    "os error 28": errno.ENOSPC,
    "os error 27": errno.EFBIG,
    "os error 122": errno.EDQUOT,
    "os error 30": errno.EROFS,
    "os error 13": errno.EACCES,
}


def os_error_code(exc: BaseException) -> int | None:
    """The errno behind an exception: its own, else one the engine wrote into its message."""
    code = getattr(exc, "errno", None)
    if code:
        return int(code)
    text = str(exc)
    return next((c for marker, c in ENGINE_OS_ERRORS.items() if marker in text), None)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line (an HTML error page or an engine's multi-line text is cut, not dumped)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " ..."


class CellFeaturesError(Exception):
    """Base class for errors raised deliberately by cellfeatures."""


class ConfigError(CellFeaturesError):
    """A configuration file or value is invalid."""


class SourceError(CellFeaturesError):
    """A table could not be read from a source."""


class TableNotFoundError(SourceError):
    """The source does not provide the requested table."""


class SchemaError(CellFeaturesError):
    """Collected data does not match its pandera model."""

    def __init__(self, table: str, message: str) -> None:
        super().__init__(f"table {table!r} failed validation:\n{message}")
        self.table = table


class IdentityError(CellFeaturesError):
    """Nucleus/root identity bookkeeping is inconsistent."""


class StoreError(CellFeaturesError):
    """The feature store could not build, find or load a version."""


class VersionNotFoundError(StoreError):
    """No feature version matches the given id or prefix."""


class DamagedVersionError(StoreError):
    """A published version's manifest is unreadable, or its files differ from what the manifest records."""


class DamagedDatasetError(StoreError):
    """A built dataset's card is unreadable, or its files differ from the sizes and SHA-256 its card records."""


class ExecutionError(CellFeaturesError):
    """The distributed engine cannot be used: scheduler unreachable, scratch unusable, dask missing."""


class ModelIntegrityError(CellFeaturesError):
    """A saved model does not match its sidecar (tampered file, or another dataset)."""


class LeakageError(CellFeaturesError):
    """The dataset's features would reveal its label."""


class CaveAuthError(SourceError):
    """The server rejected the token (or there is none)."""


class IncompleteFetchError(SourceError):
    """A fetch could not prove it has every row."""
