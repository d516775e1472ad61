"""How the library's objects look in a notebook (`_repr_html_`) and at a prompt (`__repr__`).

One place renders a feature version, a dataset, a leaderboard and a version diff, both as a short
plain-text summary and as HTML that Jupyter shows inline and the HTML report reuses. Every value that
comes from data, files or configs goes through `html.escape`: a table name with `<` must not become
markup. No external CSS or JS: the styles are inline so the HTML is self-contained.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

ORIGIN_COLOURS = {"real": "#1a7f37", "derived": "#0969da", "synthetic": "#bc4c00"}
BOX = "font-family:system-ui,sans-serif;font-size:13px;line-height:1.4;max-width:100%"
TABLE = "border-collapse:collapse;margin:4px 0 8px 0"
CELL = "border:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def badge(origin: str) -> str:
    """A coloured origin tag: real, derived from real, or synthetic."""
    colour = ORIGIN_COLOURS.get(origin, "#57606a")
    return (
        f'<span style="background:{colour};color:#fff;border-radius:8px;padding:0 6px;font-size:11px">'
        f"{esc(origin)}</span>"
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], raw: Sequence[bool] = ()) -> str:
    """An HTML table; cells are escaped unless their column is flagged raw (already-rendered HTML)."""
    flags = list(raw) + [False] * (len(columns) - len(raw))
    head = "".join(f'<th style="{CELL};background:#f6f8fa">{esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="{CELL}">{v if flags[i] else esc(v)}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table style="{TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def box(title: str, *parts: str) -> str:
    return f'<div style="{BOX}"><div style="font-weight:600;font-size:14px">{esc(title)}</div>{"".join(parts)}</div>'


def para(text: str) -> str:
    return f'<div style="margin:2px 0">{esc(text)}</div>'


def num(value: Any, digits: int = 3, missing: str = "–") -> str:
    return missing if value is None or value != value else f"{value:.{digits}f}"


def difference(row: dict[str, Any], metric: str) -> str:
    """'−0.021 [−0.049, +0.011] not distinguishable': a leaderboard row's paired difference to the best model."""
    diff = row.get(f"{metric}_diff")
    if diff is None or diff != diff:
        return "best" if row.get("vs_best") is None and row.get("kind") in ("trained", "custom") else "–"
    return paired({"diff": diff, "low": row.get(f"{metric}_diff_low"), "high": row.get(f"{metric}_diff_high")})


def paired(d: dict[str, Any] | None) -> str:
    """'+0.051 [+0.037, +0.075] higher' / '... not distinguishable': a paired difference and its verdict,
    read from its interval (the difference is "higher" or "lower" only when the interval excludes zero)."""
    if not d or d.get("diff") is None or d["diff"] != d["diff"]:
        return "–"
    diff, low, high = d["diff"], d.get("low"), d.get("high")
    if low is None or high is None or low != low or high != high:
        return f"{diff:+.3f}".replace("-", "−")
    verdict = "lower" if high < 0 else "higher" if low > 0 else "not distinguishable"
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}".replace("-", "−")


def interval(row: dict[str, Any], metric: str, *, spread: bool = False, missing: str = "–") -> str:
    """The one leaderboard cell formatter: `mean [low, high]` of a metric, `(±fold sd)` with `spread`.

    Used by the reports, the reprs and the command line alike, so a number reads the same everywhere.
    """
    mean = row.get(f"{metric}_mean")
    if mean is None or mean != mean:
        return missing
    text = num(mean)
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if low is not None and high is not None:
        text += f" [{num(low)}, {num(high)}]"
    if spread and row.get(f"{metric}_fold_std") is not None:
        text += f" (±{num(row[f'{metric}_fold_std'])})"
    return text


# ------------------------------------------------------------------ feature version
def version_text(manifest: dict[str, Any], path: Any) -> str:
    origins = _origin_counts(manifest)
    return (
        f"FeatureVersion {manifest['version']} · {manifest['rows']:,} cells · {len(manifest['features'])} features "
        f"({', '.join(f'{n} {o}' for o, n in origins.items())}) · families {', '.join(manifest['families'])} · "
        f"source {_source_line(manifest)} · {path}"
    )


def version_html(manifest: dict[str, Any], path: Any) -> str:
    features = manifest["features"]
    families = table(
        ("family", "features", "origins", "inputs", "seconds"),
        [
            (
                fam,
                sum(1 for f in features.values() if f["family"] == fam),
                " ".join(badge(o) for o in sorted({f["origin"] for f in features.values() if f["family"] == fam})),
                ", ".join(info.get("inputs", [])),
                f"{info.get('seconds', 0):.2f}",
            )
            for fam, info in manifest["families"].items()
        ],
        raw=(False, False, True),
    )
    inputs = table(
        ("table", "origin", "rows"),
        [(name, badge(info["origin"]), f"{info['rows']:,}") for name, info in manifest.get("inputs", {}).items()],
        raw=(False, True),
    )
    skipped = manifest.get("skipped") or []
    parts = [
        para(f"{manifest['rows']:,} cells · {len(features)} features · built {manifest['built_at']} · {path}"),
        para(f"source: {_source_line(manifest)}"),
        para("features by origin: " + ", ".join(f"{n} {o}" for o, n in _origin_counts(manifest).items())),
        families,
        "<details><summary>inputs</summary>" + inputs + "</details>",
        "<details><summary>features</summary>" + catalogue_html(features) + "</details>",
    ]
    if skipped:
        parts.append(para("skipped: " + "; ".join(f"{s['family']} ({s['table']}: {s['why']})" for s in skipped)))
    return box(f"FeatureVersion {manifest['version']}", *parts)


def catalogue_html(features: dict[str, dict[str, Any]]) -> str:
    return table(
        ("feature", "family", "origin", "unit", "null %", "description"),
        [
            (
                name,
                f["family"],
                badge(f["origin"]),
                f.get("unit", ""),
                f"{100 * f.get('null_rate', 0):.1f}",
                f.get("description", ""),
            )
            for name, f in features.items()
        ],
        raw=(False, False, True),
    )


def _origin_counts(manifest: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in manifest["features"].values():
        counts[f["origin"]] = counts.get(f["origin"], 0) + 1
    return dict(sorted(counts.items()))


def _source_line(manifest: dict[str, Any]) -> str:
    src = manifest["source"]
    bits = [str(src.get("kind"))]
    if src.get("datastack"):
        bits.append(str(src["datastack"]))
    if src.get("materialization_version") is not None:
        bits.append(f"v{src['materialization_version']}")
    return " ".join(bits)


# ------------------------------------------------------------------ dataset
def dataset_text(card: dict[str, Any], path: Any) -> str:
    folds = [f for f in card["folds"] if f.startswith("fold_")]
    return (
        f"Dataset {card['name']} {card['dataset_id']} · {card['cells']:,} cells · {len(card['features'])} features · "
        f"label {card['label']['column']} ({card['label']['source']}, {card['label']['level']}) · "
        f"{card['spec']['split']['strategy']} split, {len(folds)} folds · version {card['feature_version']} · {path}"
    )


def dataset_html(card: dict[str, Any], path: Any) -> str:
    classes = list(card["class_counts"])
    fold_rows = []
    for fold, roles in card["folds"].items():
        for role in ("train", "test", "buffer"):
            counts = roles.get(role, {})
            fold_rows.append((fold, role, sum(counts.values()), *[counts.get(c, 0) for c in classes]))
    split = card["spec"]["split"]
    filters = table(("step", "cells"), [(s["step"], f"{s['cells']:,}") for s in card["filters"]])
    features = table(
        ("feature", "origin"), [(f, badge(o)) for f, o in card["feature_origins"].items()], raw=(False, True)
    )
    risks = "".join(f"<li>{esc(r)}</li>" for r in card["leakage_risks"]) or "<li>none identified</li>"
    parts = [
        para(
            f"{card['cells']:,} cells · label {card['label']['column']} from {card['label']['source']} "
            f"({card['label']['level']} level, {len(classes)} classes) · feature version {card['feature_version']}"
        ),
        para(
            f"split: {split['strategy']}, {split['folds']} folds, seed {split['seed']}"
            + (f", blocks {split['block_um']:g} um" if split["strategy"] == "spatial" else "")
            + f" · {path}"
        ),
        "<details><summary>filters</summary>" + filters + "</details>",
        "<div>class counts per fold and role</div>" + table(("fold", "role", "cells", *classes), fold_rows),
        f"<details><summary>{len(card['features'])} features</summary>" + features + "</details>",
        f"<div>leakage risks</div><ul>{risks}</ul>",
    ]
    return box(f"Dataset {card['name']} ({card['dataset_id']})", *parts)


# ------------------------------------------------------------------ leaderboard
LEADERBOARD_COLUMNS = ("entry", "kind", "features", "balanced accuracy [95% CI]", "accuracy [95% CI]", "coverage")


def leaderboard_rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for r in rows:
        coverage = r.get("coverage")
        out.append(
            (
                (f"{r['dataset']}: " if r.get("dataset") else "") + str(r["entry"]),
                r["kind"],
                r["feature_origins"],
                interval(r, "balanced_accuracy"),
                interval(r, "accuracy"),
                "100%" if coverage is None or coverage != coverage else f"{coverage:.0%}",
            )
        )
    return out


def leaderboard_text(rows: list[dict[str, Any]], title: str) -> str:
    lines = [title]
    for row in leaderboard_rows(rows):
        lines.append(f"  {row[0]:<40} {row[3]:<26} acc {row[4]}")
    return "\n".join(lines)


def leaderboard_html(rows: list[dict[str, Any]], title: str) -> str:
    return box(
        title,
        para(
            "mean over seeds [95% bootstrap interval over spatial blocks, one draw for every seed]; "
            "ranked by balanced accuracy"
        ),
        table(LEADERBOARD_COLUMNS, leaderboard_rows(rows)),
    )


# ------------------------------------------------------------------ diff
def diff_text(d: Any) -> str:
    return (
        f"VersionDiff {d.a[:8]} → {d.b[:8]}: cells +{d.cells_added} −{d.cells_removed} re-rooted {d.cells_rerooted}; "
        f"features +{len(d.features_added)} −{len(d.features_removed)}; "
        f"{len(d.changed_features)} of {len(d.drift)} features changed; "
        f"{len(d.config_changes)} config keys; {len(d.tables_changed)} input tables"
    )


def diff_html(d: Any) -> str:
    parts = [
        para(f"cells: +{d.cells_added:,} added, −{d.cells_removed:,} removed, {d.cells_rerooted:,} re-rooted"),
        para(f"features added: {', '.join(d.features_added) or 'none'}"),
        para(f"features removed: {', '.join(d.features_removed) or 'none'}"),
    ]
    if d.config_changes:
        parts.append(table(("config key", "a", "b"), [(c["key"], c["a"], c["b"]) for c in d.config_changes]))
    if d.tables_changed:
        parts.append(para(f"input tables changed: {', '.join(d.tables_changed)}"))
    changed = d.changed_features
    parts.append(para(f"features with changed values: {len(changed)} of {len(d.drift)}"))
    if changed:
        parts.append(
            table(
                ("feature", "cells changed", "max |Δ|", "example nucleus ids"),
                [
                    (c["feature"], f"{c['changed']:,}", num(c.get("max_abs_change"), 4), c.get("examples", []))
                    for c in changed
                ],
            )
        )
    return box(f"VersionDiff {d.a} → {d.b}", *parts)
