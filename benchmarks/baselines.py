"""Benchmark: the baseline stage on the embedded sample, quiet and with CPU burners, before and after.

    python benchmarks/baselines.py [--burners 2] [--timeout 900] [--modes fit,after,before,run]

"after" is what cellfeatures does now: every (model, seed, fold) fit in worker processes sized to the
cores this process may use, each fit with one BLAS/OpenMP thread. "before" is what it did: the same fits
one after another in this process with the libraries' default thread teams (OpenMP spins a team per
core). "fit" times one HistGradientBoostingClassifier fit on the type-level training fold (about a
thousand cells x 14 features) both ways. "run" times the whole `cellfeatures run` (features, datasets,
baselines, report) from an empty store, as a user types it. Burners are `yes > /dev/null` processes, one per requested
burner, started before and killed after each loaded measurement. Each measurement runs in its own
subprocess (its own thread pools), with a timeout; prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
mode, store_root, datasets_root = sys.argv[1], sys.argv[2], sys.argv[3]
from cellfeatures.config.model import default_config
from cellfeatures.store.store import FeatureStore
from cellfeatures.datasets.build import build_dataset, seed_sibling
from cellfeatures.datasets.spec import spec_from_config
from cellfeatures.benchmark.entries import trained_tasks
from cellfeatures.benchmark.fits import run_fits
from cellfeatures.benchmark.models import TRAINED_MODELS
cfg = default_config()
store = FeatureStore(store_root)
store.build(cfg)
ds = build_dataset(store, spec_from_config(cfg, "column_types", {}), datasets_root, label_blocks=cfg.raw.get("labels"))
if mode.startswith("fit"):
    from cellfeatures.benchmark.fits import FitTask, _fit_one
    task = trained_tasks({0: ds}, "hist_gradient_boosting", "hist_gradient_boosting")[0]
    t0 = time.perf_counter()
    _fit_one(task, None if mode == "fit_default_threads" else 1)
    print(json.dumps({"seconds": time.perf_counter() - t0, "fits": 1}))
    raise SystemExit
datasets = {s: seed_sibling(store, ds, s, __import__("pathlib").Path(datasets_root)) for s in (0, 1, 2)}
tasks = [t for m in TRAINED_MODELS for t in trained_tasks(datasets, m, m)]
t0 = time.perf_counter()
if mode == "after":
    fits = run_fits(tasks)
else:
    fits = run_fits(tasks, n_jobs=1, threads=None)
print(json.dumps({"seconds": time.perf_counter() - t0, "fits": len(fits)}))
"""


def measure(mode: str, burners: int, timeout: float, store: str, datasets: str) -> dict[str, object]:
    procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(burners)]
    try:
        t0 = time.perf_counter()
        if mode == "run":
            with tempfile.TemporaryDirectory() as cwd:
                command = [sys.executable, "-m", "cellfeatures.cli", "run"]
                proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1]}
            return {"seconds": time.perf_counter() - t0}
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, store, datasets], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["wall"] = time.perf_counter() - t0
        return result
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--modes", default="fit,after,before")
    args = parser.parse_args()
    modes = args.modes.split(",")
    plan = []
    if "fit" in modes:
        plan += [("one HGB fit, default threads", "fit_default_threads"), ("one HGB fit, 1 thread", "fit_one_thread")]
    if "after" in modes:
        plan.append(("baseline stage, after (processes x 1 thread)", "after"))
    if "before" in modes:
        plan.append(("baseline stage, before (sequential, default threads)", "before"))
    if "run" in modes:
        plan.append(("`cellfeatures run` from an empty store", "run"))
    cores = len(os.sched_getaffinity(0))
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {cores} usable cores, python {platform.python_version()}")
    print()
    print(f"| what | quiet (s) | with {args.burners} burners (s) | slow-down |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        store, datasets = f"{tmp}/features", f"{tmp}/datasets"
        measure("fit_one_thread", 0, args.timeout, store, datasets)  # build features + dataset once, untimed
        for label, mode in plan:
            quiet = measure(mode, 0, args.timeout, store, datasets)
            loaded = measure(mode, args.burners, args.timeout, store, datasets)

            def fmt(r: dict[str, object]) -> str:
                if "timeout" in r:
                    return f"> {r['timeout']:.0f} (timed out)"
                if "error" in r:
                    return f"failed: {r['error']}"
                return f"{float(r['seconds']):.1f}"  # type: ignore[arg-type]

            ratio = (
                f"{float(loaded['seconds']) / float(quiet['seconds']):.1f}x"  # type: ignore[arg-type]
                if "seconds" in quiet and "seconds" in loaded
                else "-"
            )
            print(f"| {label} | {fmt(quiet)} | {fmt(loaded)} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
