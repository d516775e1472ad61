"""cellfeatures tunes polars' allocator only when it can take effect and the user has not chosen."""

from __future__ import annotations

import os
import subprocess
import sys

from cellfeatures._util.runtime import ALLOCATOR_CONF, ALLOCATOR_ENV

SHOW = f"import os; print(os.environ.get({ALLOCATOR_ENV!r}, '<unset>'))"


def run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != ALLOCATOR_ENV}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_importing_cellfeatures_first_sets_the_allocator_options() -> None:
    assert run(f"import cellfeatures; {SHOW}") == ALLOCATOR_CONF


def test_a_users_own_setting_wins_even_when_empty() -> None:
    assert run(f"import cellfeatures; {SHOW}", **{ALLOCATOR_ENV: "narenas:2"}) == "narenas:2"
    assert run(f"import cellfeatures; {SHOW}", **{ALLOCATOR_ENV: ""}) == ""


def test_nothing_is_set_once_polars_is_loaded_since_it_could_not_take_effect() -> None:
    assert ALLOCATOR_CONF not in run(f"import polars, cellfeatures; {SHOW}"), "polars' own defaults stay"


def test_polars_appends_our_options_to_its_defaults_so_they_win() -> None:
    seen = run(f"import cellfeatures, polars; {SHOW}")
    assert seen.endswith("," + ALLOCATOR_CONF), seen
