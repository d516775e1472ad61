"""The self-contained HTML report: everything embedded, the headline numbers with their intervals, and
a real browser that opens it without errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl
import pytest

from cellfeatures.benchmark.leaderboard import Leaderboard
from cellfeatures.errors import StoreError
from cellfeatures.report.html import markdown_to_html, write_html_report
from tests.browser import find_chromium, visit

ARTIFACTS = Path(os.environ.get("CELLFEATURES_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def report(sample_project: Path) -> Path:
    return Leaderboard.load("column_types", sample_project / "datasets").path


def test_markdown_subset_becomes_html_with_values_escaped(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG fake")
    md = (
        "## Title <x>\n\nSome **bold** and `code`.\n\n| a | b |\n|---|---|\n| 1 | <i>2</i> |\n\n"
        "- one\n- two\n  - [nested](#title-x)\n\n![fig](figures/a.png)\n\n## Title <x>\n"
    )
    html = markdown_to_html(md, tmp_path)
    # GitHub's anchors, a repeated heading numbered: the Markdown contents' links work in the HTML too
    assert '<h2 id="title-x">Title &lt;x&gt;</h2>' in html and '<h2 id="title-x-1">' in html
    assert '<li class="sub"><a href="#title-x">nested</a></li>' in html
    assert '<div class="scroll"><table>' in html  # a wide table scrolls in its box at 900 px
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "<th>a</th>" in html and "<td>&lt;i&gt;2&lt;/i&gt;</td>" in html and "---" not in html
    assert "<li>one</li><li>two</li>" in html
    assert 'src="data:image/png;base64,' in html


def test_a_missing_figure_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"refers to figures/gone.png, which is missing"):
        markdown_to_html("![x](figures/gone.png)\n", tmp_path)


def test_the_report_is_self_contained_and_carries_the_headline(report: Path) -> None:
    html = write_html_report(report).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "nothing may load from the network"
    assert "<script" not in html
    images = re.findall(r"<img [^>]*src=['\"]([^'\"]{0,30})", html)
    assert len(images) >= 5 and all(src.startswith("data:image/png;base64,") for src in images)
    board = pl.read_csv(report / "leaderboard.csv")
    lr = board.filter(pl.col("entry") == "logistic_regression").row(0, named=True)
    headline = (
        f"{lr['balanced_accuracy_mean']:.3f} [{lr['balanced_accuracy_ci_low']:.3f}, "
        f"{lr['balanced_accuracy_ci_high']:.3f}]"
    )
    assert headline in html.split("</div>", 3)[2] or headline in html
    for section in (
        "Headline",
        "Confusion matrices",
        "Per-class metrics",
        "Calibration",
        "Feature distributions per class",
        "Depth profile per type",
        "Features and where they come from",
        "class counts per fold and role",
    ):
        assert section in html, section
    assert ">real</span>" in html and ">derived</span>" in html
    # the contents at the top link every section, in the Markdown and in the HTML alike
    md = (report / "REPORT.md").read_text()
    links = re.findall(r"\]\(#([\w\-]+)\)", md.split("## Contents", 1)[1].split("\n## ", 1)[0])
    assert len(links) >= 10 and len(set(links)) == len(links)
    ids = set(re.findall(r'<h[23] id="([^"]+)"', html))
    assert set(links) <= ids, set(links) - ids
    assert all(f'href="#{link}"' in html for link in links)  # every entry is a link in the HTML too


def test_the_report_opens_in_a_real_browser(report: Path) -> None:
    """Headless Chromium opens REPORT.html: no console error, no request leaves the file, every image
    decodes. A screenshot is saved to test-artifacts/ for a person to look at."""
    if find_chromium() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium package")
        pytest.skip("chromium not installed here (apt-get install chromium); under CI=true this test must run")
    page = write_html_report(report)
    seen = visit(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(seen.screenshot)
    assert seen.title.startswith("cellfeatures report")
    assert not seen.console_errors and not seen.exceptions, (seen.console_errors, seen.exceptions)
    outside = [u for u in seen.requests if not u.startswith(("file:", "data:"))]
    assert not outside, f"the report fetched {outside}"
    assert len(seen.images) >= 5
    broken = [i for i in seen.images if not i["complete"] or i["width"] == 0]
    assert not broken, f"images that did not load: {broken}"
    assert seen.screenshot.startswith(b"\x89PNG") and len(seen.screenshot) > 10_000


def test_the_report_shows_fold_sizes_and_the_paired_difference_to_the_best_model(report: Path) -> None:
    import json

    board = Leaderboard.load(report)
    card = board.dataset.card
    text = (report / "REPORT.md").read_text()
    trains = [sum(r["train"].values()) for f, r in card["folds"].items() if f != "locked"]
    assert f"Each cross-validation fold trains on {min(trains):,}-{max(trains):,} cells" in text
    for fold, roles in card["folds"].items():
        tested = sum(roles["test"].values())
        assert f"| {fold} | {sum(roles['train'].values()):,} | {tested:,} |" in text
    thin = sum(1 for roles in card["folds"].values() for n in roles["test"].values() if n <= 1)
    assert f"{thin} fold-class pair(s) hold at most one test cell" in text
    frame = board.frame()
    clusters = frame["clusters"].drop_nulls().unique().to_list()
    assert len(clusters) == 1 and f"each drawing the {clusters[0]} spatial blocks" in text
    majority = frame.filter(pl.col("entry") == "majority").row(0, named=True)
    assert majority["vs_best"] == "logistic_regression" and majority["balanced_accuracy_diff_high"] < 0
    assert json.loads((report / "entries.json").read_text()), "the differences are saved with the entries"


def test_the_report_gives_the_best_models_recall_per_class_with_intervals_and_marks_small_classes(
    report: Path,
) -> None:
    from cellfeatures.benchmark.entries import class_recalls
    from cellfeatures.benchmark.evaluate import Evaluator

    board = Leaderboard.load(report)
    best = board.best()
    assert best is not None
    text = (report / "REPORT.md").read_text()
    assert "### Recall per class (mean over seeds [95% joint block bootstrap])" in text
    counts = board.dataset.card["class_counts"]
    recalls = class_recalls(best, board.datasets, Evaluator(board.dataset).classes)
    for c, n in counts.items():
        r = recalls[c]
        expected = sum(m["per_class"][c]["recall"] for m in best.per_seed) / len(best.per_seed)
        assert r["mean"] == pytest.approx(expected)
        assert r["low"] <= r["mean"] <= r["high"]
        small = " *small*" if n < 20 else ""
        assert f"| {c}{small} | {n:,} | {r['test_cells']} | {r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}] |" in text
    assert any(n < 20 for n in counts.values()), "the sample has small classes (NGC, 5P-NP): they are marked"


def test_figures_give_every_class_its_own_colour_and_nanometre_units_in_micrometres() -> None:
    import numpy as np

    from cellfeatures.report.figures import class_colours, in_micrometres

    for n in (2, 11, 20, 25):
        assert len(set(class_colours(n))) == n, f"{n} classes, {n} colours"
    values, unit = in_micrometres("somanuc_soma_volume_nm3", np.array([2.5e11]))
    assert unit == "µm³" and values[0] == pytest.approx(250.0)
    assert in_micrometres("soma_area_nm2", np.array([3e6]))[1] == "µm²"
    assert in_micrometres("soma_depth_um", np.array([1.0]))[1] == ""
