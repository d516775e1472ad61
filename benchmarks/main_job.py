"""Benchmark: `cellfeatures run` on the embedded sample as a user types it, quiet, with CPU burners, and again.

    python benchmarks/main_job.py [--runs 3] [--burners 2] [--modes quiet,burners,second,cold] [--timeout 900]

Each run is a fresh project folder (this repository's `configs/` copied into a temporary directory, so the
store and the datasets start empty) and one `cellfeatures run --json` subprocess; its wall time is measured
around the process (interpreter start and imports included) and its JSON gives the seconds per stage.

- quiet: nothing else running; the sample's synthetic tables already generated (the cache is per user and
  survives between projects; a first-ever run also generates them: see `cold`).
- burners: the same with `--burners` `yes > /dev/null` processes started before and killed after.
- second: `cellfeatures run` again in the project the quiet run just filled (nothing changed: all cached).
- cold: one run with an empty synthetic-table cache too (`CELLFEATURES_CACHE` pointed at a new folder).

Prints two Markdown tables: wall time per mode (min / median / max over the runs) and the median seconds
per stage per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(project: Path, burners: int, timeout: float, env: dict[str, str]) -> dict[str, object]:
    """One `cellfeatures run --json` in `project`: wall seconds around the process, and its stages."""
    procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(burners)]
    try:
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "cellfeatures.cli", "run", "--json"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if done.returncode != 0:
        raise SystemExit(f"cellfeatures run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    outcome = json.loads(done.stdout)
    return {"wall": wall, "job": outcome["seconds"], "stages": outcome["stages"]}


def new_project(parent: Path, name: str) -> Path:
    project = parent / name
    project.mkdir()
    shutil.copytree(REPO / "configs", project / "configs")
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--modes", default="quiet,burners,second")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    env = {**os.environ, "COLUMNS": "200"}
    results: dict[str, list[dict[str, object]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="cf-main-job-") as tmp:
        parent = Path(tmp)
        warm = new_project(parent, "warm-up")
        one_run(warm, 0, args.timeout, env)  # the synthetic cache exists before anything is timed
        for i in range(args.runs):
            if "quiet" in modes or "second" in modes:
                project = new_project(parent, f"quiet-{i}")
                quiet = one_run(project, 0, args.timeout, env)
                if "quiet" in modes:
                    results["quiet"].append(quiet)
                if "second" in modes:
                    results["second"].append(one_run(project, 0, args.timeout, env))
            if "burners" in modes:
                results["burners"].append(one_run(new_project(parent, f"burners-{i}"), args.burners, args.timeout, env))
            if "cold" in modes and i == 0:
                cold_env = {**env, "CELLFEATURES_CACHE": str(parent / "empty-cache")}
                results["cold"].append(one_run(new_project(parent, "cold"), 0, args.timeout, cold_env))
    print(
        f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores usable, "
        f"Python {platform.python_version()}; {args.runs} run(s) per mode; burners = {args.burners} x `yes`"
    )
    print()
    labels = {
        "quiet": "`cellfeatures run`, empty store, quiet",
        "burners": f"`cellfeatures run`, empty store, {args.burners} CPU burners",
        "second": "`cellfeatures run` again, nothing changed",
        "cold": "`cellfeatures run`, empty store and empty synthetic cache (first use)",
    }
    print("| what | runs | wall s min | median | max | job s (median, without start-up) |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        walls = [float(r["wall"]) for r in results[mode]]  # type: ignore[arg-type]
        jobs = [float(r["job"]) for r in results[mode]]  # type: ignore[arg-type]
        if walls:
            print(
                f"| {labels[mode]} | {len(walls)} | {min(walls):.1f} | {statistics.median(walls):.1f} | "
                f"{max(walls):.1f} | {statistics.median(jobs):.1f} |"
            )
    stages: list[str] = []
    for mode in modes:
        for r in results[mode]:
            stages += [s for s in r["stages"] if s not in stages]  # type: ignore[attr-defined]
    print()
    print("| stage (median s) | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for name in stages:
        cells = []
        for mode in modes:
            values = [float(r["stages"].get(name, 0.0)) for r in results[mode]]  # type: ignore[attr-defined]
            cells.append(f"{statistics.median(values):.1f}" if values else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
