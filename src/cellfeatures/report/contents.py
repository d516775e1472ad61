"""A table of contents for REPORT.md / REPORT.html: heading anchors computed the way GitHub computes them,
so the same links work in the Markdown on a forge and in the self-contained HTML."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (letters, digits, spaces, - and _ stay),
    spaces to hyphens."""
    text = re.sub(r"[`*]", "", text.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


class Anchors:
    """Unique anchors in document order: a repeated heading gets -1, -2, ... as on GitHub."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        base = slug(text)
        n = self.seen.get(base, 0)
        self.seen[base] = n + 1
        return base if n == 0 else f"{base}-{n}"


def contents(lines: list[str], levels: tuple[int, ...] = (2, 3)) -> list[str]:
    """A nested bullet list linking every heading of the given levels of a Markdown document."""
    anchors = Anchors()
    out = []
    for line in lines:
        m = re.match(r"^(#{1,6}) (.*)$", line)
        if not m:
            continue
        level, title = len(m.group(1)), m.group(2)
        anchor = anchors(title)
        if level in levels:
            indent = "  " * (level - min(levels))
            text = re.sub(r"[`*]", "", title).replace("[", "(").replace("]", ")")  # brackets would end the link
            out.append(f"{indent}- [{text}](#{anchor})")
    return out
