"""The synapse benchmark runs end to end at 200k rows (the two-phase plan in its own engine: 16 cell buckets) and
every engine agrees (correctness only, no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "synapses.py"


def test_synapse_benchmark_smoke_all_engines_identical(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--rows",
            "200_000",
            "--cells",
            "5_000",
            "--data",
            str(tmp_path),
            "--engines",
            # polars_lazy is left out: at 200k rows "polars" (engine auto) already runs the one-frame plan
            "floor,polars,polars_bucketed,duckdb,pandas",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for engine in ("polars_bucketed", "duckdb", "pandas"):
        assert f"check {engine} vs polars: identical" in proc.stdout, proc.stdout
    assert "| polars | 200,000 |" in proc.stdout and "failed" not in proc.stdout
