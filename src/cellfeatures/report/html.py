"""One self-contained HTML file per baseline report: what a person opens in a browser.

REPORT.md stays the git-friendly record; REPORT.html is the same report plus the dataset cards,
feature distributions per class, depth profiles per type and the feature catalogue with origin
badges. Everything is embedded (figures as data: URIs, styles inline): the file opens offline, can be
mailed or attached to a lab notebook, and loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import polars as pl

from cellfeatures import display
from cellfeatures._util.atomic import write_file_atomically
from cellfeatures.benchmark.leaderboard import Leaderboard
from cellfeatures.errors import StoreError
from cellfeatures.report.contents import Anchors
from cellfeatures.report.figures import depth_profiles, feature_distributions

STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1200px;margin:24px auto;padding:0 16px;color:#1f2328}
h1{font-size:24px}h2{font-size:20px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
h3{font-size:16px;margin-top:20px}table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f6f8fa}
img{max-width:100%;height:auto;margin:6px 8px 6px 0;vertical-align:top}code{background:#f6f8fa;padding:0 3px}
.headline{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;margin:12px 0}
.note{color:#57606a;font-size:13px}.grid img{max-width:48%}
.scroll{overflow-x:auto;max-width:100%}li.sub{margin-left:18px;list-style:circle}
@media (max-width:1000px){.grid img{max-width:100%}table{font-size:12px}}
"""


def _inline(text: str) -> str:
    """Escape, then the inline Markdown we write: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"\[([^\]]+)\]\((#[\w\-]+)\)", r'<a href="\2">\1</a>', out)  # in-page links (contents)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _image(alt: str, target: str, base: Path) -> str:
    path = base / target
    if not path.is_file():
        raise StoreError(f"{base / 'REPORT.md'} refers to {target}, which is missing: rerun the baseline report")
    return f'<img alt="{html.escape(alt)}" src="{data_uri(path.read_bytes())}">'


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_to_html(md: str, base: Path) -> str:
    """The subset of Markdown our reports use: headings, tables, bullet lists, images, paragraphs."""
    out: list[str] = []
    lines = md.splitlines()
    anchors = Anchors()  # the same ids the Markdown contents link to
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,4}) (.*)$", line):
            level = len(m.group(1))
            out.append(f'<h{level} id="{anchors(m.group(2))}">{_inline(m.group(2))}</h{level}>')
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            # a wide table scrolls inside its own box instead of running off a narrow window
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
        elif line.startswith("- "):
            items = []
            while i < len(lines) and re.match(r"^\s*- ", lines[i]):
                nested = ' class="sub"' if lines[i].startswith(" ") else ""
                items.append(f"<li{nested}>{_inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif re.match(r"^!\[", line):
            figures = []
            while i < len(lines) and (m := re.match(r"^!\[(.*?)\]\((.*?)\)\s*$", lines[i])):
                figures.append(_image(m.group(1), m.group(2), base))
                i += 1
            grid = ' class="grid"' if len(figures) > 1 else ""  # confusion matrices side by side
            out.append(f"<div{grid}>{''.join(figures)}</div>")
        else:
            text = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- |!\[)", lines[i]):
                text.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(text))}</p>")
    return "\n".join(out)


def _headline(board: pl.DataFrame) -> str:
    """The best headline entry per dataset, with its interval: the numbers a reader looks for first."""
    items = []
    for name in board["dataset"].unique(maintain_order=True).to_list():
        rows = board.filter((pl.col("dataset") == name) & pl.col("headline") & (pl.col("kind") != "floor"))
        rows = rows.sort("balanced_accuracy_mean", descending=True, nulls_last=True)
        if not rows.height:
            continue
        r = rows.row(0, named=True)
        items.append(
            f"<li><strong>{html.escape(name)}</strong> ({html.escape(str(r['level']))} level): best "
            f"<strong>{html.escape(str(r['entry']))}</strong>, balanced accuracy "
            f"{display.interval(r, 'balanced_accuracy')}, accuracy {display.interval(r, 'accuracy')} "
            f"({r['n_test']:,} test cells, {r['seeds']} seeds)</li>"
        )
    return (
        '<div class="headline"><div><strong>Headline</strong> (real and derived features only; mean over seeds '
        "[95% bootstrap interval over spatial blocks, one draw for every seed])</div><ul>"
        + "".join(items)
        + "</ul></div>"
    )


def render(report_dir: Path, shown: Path | None = None) -> str:
    """The HTML text of a report directory (`shown`: the path to print, when rendering a build in progress)."""
    saved = Leaderboard.load(report_dir)
    board = saved.frame()
    md = (report_dir / "REPORT.md").read_text()
    body = [
        "<h1>cellfeatures baseline report</h1>",
        f'<div class="note">{html.escape(str(shown or report_dir))}</div>',
        _headline(board),
    ]
    body.append(markdown_to_html(md.split("\n", 1)[1] if md.startswith("# ") else md, report_dir))
    for ds in (b.dataset for b in saved.boards):
        name = html.escape(f"{ds.card['name']}/{ds.id}")
        body.append(f"<h2>Dataset {name}</h2>")
        body.append(display.dataset_html(ds.card, ds.path))
        for title, png in (
            ("Feature distributions per class (real features first)", feature_distributions(ds)),
            (f"Depth profile per {ds.card['label']['level']}", depth_profiles(ds)),
        ):
            if png is not None:
                body.append(f"<h3>{html.escape(title)}</h3><div><img alt='{html.escape(title)}' src='{data_uri(png)}'>")
                body.append("</div>")
        body.append("<h3>Features and where they come from</h3>")
        body.append(
            display.table(
                ("feature", "origin"),
                [(f, display.badge(o)) for f, o in ds.card["feature_origins"].items()],
                raw=(False, True),
            )
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>cellfeatures report {html.escape((shown or report_dir).name)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_html_report(report_dir: str | Path) -> Path:
    """Write REPORT.html next to REPORT.md (atomically) and return its path."""
    report_dir = Path(report_dir)
    if not (report_dir / "REPORT.md").exists() or not (report_dir / "leaderboard.csv").exists():
        raise StoreError(f"{report_dir} is not a baseline report (no REPORT.md / leaderboard.csv)")
    text = render(report_dir)
    return write_file_atomically(report_dir / "REPORT.html", lambda tmp: tmp.write_text(text, encoding="utf-8"))
