"""Benchmark: the synapse family on the local engine against a Dask LocalCluster, and what it projects to.

    python benchmarks/distributed.py --rows 100_000_000 [--cells 120_000] [--workers 2] [--data benchmarks/_data]
                                     [--read-mb-s 200] [--scratch-mb-s 200] [--open-ms 2] [--task-ms 1]

1. Generates (once, cached under --data; the same snapshot as benchmarks/synapses.py) a partitioned
   synthetic table shaped like synapses_pni_2 + synapse_target_predictions_ssa.
2. Runs, each in its own subprocess: the local engine (the family as `cellfeatures build` runs it), then
   the Dask engine on a LocalCluster(--workers processes x 1 thread) over the same files, and checks the
   two matrices are bit-for-bit identical.
3. Prints one table (wall time, peak memory of the client and of each worker, bytes written to scratch,
   per-task times) and, from the measured per-task costs, a projection of wall time for 337M, 10^10 and
   10^12 synapses on 8, 64 and 512 workers, with every assumption printed next to it.

No speed-up is expected on 2 cores: what is measured is the engine's overhead against the local one.
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
from pathlib import Path

import cellfeatures  # noqa: F401  (tunes polars' allocator first, as the CLI does)

# isort: split
import polars as pl

# This file shares its name with the `distributed` package: keep its folder off the import path, or the
# lazy `import distributed` in cellfeatures.pipelines.execution would import this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SYN, TAGS, NUC, LABELS = (
    "synapses_pni_2",
    "synapse_target_predictions_ssa",
    "nucleus_detection_v0",
    "aibs_metamodel_celltypes_v661",
)
CONFIG = {"synapse_table": SYN, "target_table": TAGS, "partner_label_table": LABELS, "soma_distance": False}
RANGE_ROWS = 5_000_000  # the Dask engine's fixed range: memory per worker does not grow with the table
SYNAPSES_PER_BUCKET = 5_000_000  # and at least MIN_BUCKETS: the local and Dask default of synapses._two_phase
MIN_BUCKETS = 32


def own_peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child(engine: str, snapshot: str, out: str, workers: int) -> None:
    """Build the synapse family with one engine; print wall time, peak RSS and the engine's task costs."""
    from cellfeatures.identity import identity_map
    from cellfeatures.pipelines import synapses
    from cellfeatures.pipelines.base import BuildContext
    from cellfeatures.pipelines.execution import ExecutionSpec, open_engine
    from cellfeatures.pipelines.nucleus import load_identity_nucleus
    from cellfeatures.sources.snapshot import SnapshotSource

    source = SnapshotSource(snapshot)
    identity = identity_map(load_identity_nucleus(source, NUC))
    cfg = {**CONFIG, "validate_max_rows": 0, "engine": "bucketed"}
    spec = ExecutionSpec(engine=engine, workers=workers, threads=1)
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as scratch:
        t0 = time.perf_counter()
        with open_engine(spec, scratch, say=lambda _m: None) as running:
            started = time.perf_counter() - t0
            ctx = BuildContext(source=source, identity=identity, scratch=Path(scratch), engine=running)
            # sorted as the store sorts the matrix (a join does not promise an order)
            synapses.build(ctx, cfg).collect().sort("nucleus_id").write_parquet(out)
            seconds = time.perf_counter() - t0
            costs = running.costs if running is not None else None
    report = {"engine": engine, "seconds": seconds, "startup_seconds": started, "peak_rss_bytes": own_peak_rss_bytes()}
    if costs is not None:
        report["phase1"] = costs.phase1
        report["phase2"] = [{k: v for k, v in r.items() if k != "parts"} for r in costs.phase2]
    print(json.dumps(report))


def run_child(engine: str, snapshot: Path, out: Path, workers: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", engine, str(snapshot), str(out), str(workers)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def projection(
    rows: int,
    workers: int,
    per_syn_1: float,
    per_syn_2: float,
    source_bytes: float,
    scratch_bytes: float,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Projected wall seconds of the Dask engine for `rows` synapses on `workers` one-thread workers.

    compute: the measured per-synapse task seconds (phase 1 + phase 2), divided over the workers;
    I/O: source bytes read once, scratch bytes written once and read once, at the assumed per-worker
    bandwidths (not overlapped with compute: an upper bound); fan-in: every bucket task opens every range
    file (ranges x buckets opens at --open-ms each, divided over the workers); scheduling: --task-ms per
    task on the one scheduler (serial).
    """
    ranges = -(-rows // RANGE_ROWS)
    buckets = max(MIN_BUCKETS, -(-rows // SYNAPSES_PER_BUCKET))
    compute = rows * (per_syn_1 + per_syn_2) / workers
    io = rows * (source_bytes / (args.read_mb_s * 1e6) + 2 * scratch_bytes / (args.scratch_mb_s * 1e6)) / workers
    fan_in = ranges * buckets * args.open_ms / 1000 / workers
    scheduling = (ranges + buckets) * args.task_ms / 1000
    return {
        "compute": compute,
        "io": io,
        "fan_in": fan_in,
        "scheduling": scheduling,
        "total": compute + io + fan_in + scheduling,
    }


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=100_000_000)
    parser.add_argument("--cells", type=lambda s: int(s.replace("_", "")), default=120_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "_data")
    parser.add_argument("--tagged-fraction", type=float, default=round(204_331_842 / 337_312_429, 4))
    parser.add_argument("--read-mb-s", type=float, default=200.0, help="assumed source read bandwidth per worker")
    parser.add_argument("--scratch-mb-s", type=float, default=200.0, help="assumed scratch bandwidth per worker")
    parser.add_argument("--open-ms", type=float, default=2.0, help="assumed cost to open one scratch file")
    parser.add_argument("--task-ms", type=float, default=1.0, help="assumed scheduler overhead per task")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, snapshot, out, workers = args.child
        child(engine, snapshot, out, int(workers))
        return

    from polars.testing import assert_frame_equal

    from cellfeatures.sources.synthetic.cells import SyntheticSpec
    from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

    spec = SyntheticSpec(
        n_cells=args.cells,
        n_synapses=args.rows,
        seed=args.seed,
        chunk_rows=5_000_000,
        tagged_fraction=args.tagged_fraction,
        position_columns=False,
    )
    t0 = time.perf_counter()
    snapshot = write_synthetic_snapshot(spec, args.data / f"synthetic-{spec.key()}")
    generated = time.perf_counter() - t0
    source_bytes = sum(p.stat().st_size for t in (SYN, TAGS) for p in (snapshot / t).glob("*.parquet"))
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        local = run_child("local", snapshot, Path(tmp) / "local.parquet", args.workers)
        dask = run_child("dask", snapshot, Path(tmp) / "dask.parquet", args.workers)
        try:
            assert_frame_equal(
                pl.read_parquet(Path(tmp) / "local.parquet"),
                pl.read_parquet(Path(tmp) / "dask.parquet"),
                check_exact=True,
            )
            identical = "bit-for-bit identical"
        except AssertionError as exc:
            identical = f"DIFFERENT: {str(exc)[:200]}"

    p1, p2 = dask["phase1"], dask["phase2"]
    scratch = sum(r["bytes"] for r in p1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus (usable {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, polars {pl.__version__}, dask {__import__('dask').__version__}"
    )
    print(
        f"input: {args.rows:,} synapses, {args.cells:,} nuclei, {source_bytes / 2**30:.2f} GiB of Parquet "
        f"({snapshot}, generated or found in {generated:.1f} s)"
    )
    print(f"check dask vs local: {identical}")
    print()
    print(
        "| engine | wall s | of which cluster start s | peak RSS client GiB | peak RSS per worker GiB | "
        "scratch written GiB | tasks | task s median / max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    local_peak = local["peak_rss_bytes"] / 2**30
    print(f"| local | {local['seconds']:.1f} | – | {local_peak:.2f} | – | (in-process spill) | – | – |")
    worker_peak = max(r["peak_rss_bytes"] for r in p1 + p2)
    print(
        f"| dask LocalCluster({args.workers} x 1 thread) | {dask['seconds']:.1f} | {dask['startup_seconds']:.1f} | "
        f"{dask['peak_rss_bytes'] / 2**30:.2f} | {worker_peak / 2**30:.2f} | {scratch / 2**30:.2f} | "
        f"{len(p1)} ranges + {len(p2)} buckets | phase 1 {median([r['seconds'] for r in p1]):.2f} / "
        f"{max(r['seconds'] for r in p1):.2f}; phase 2 {median([r['seconds'] for r in p2]):.2f} / "
        f"{max(r['seconds'] for r in p2):.2f} |"
    )
    print(
        f"overhead ratio dask / local: {dask['seconds'] / local['seconds']:.2f}x "
        f"({(dask['seconds'] - dask['startup_seconds']) / local['seconds']:.2f}x without the cluster start)"
    )
    # per synapse, per worker-thread: what one task costs divided by the synapses it covers
    per_syn_1 = sum(r["seconds"] for r in p1) / args.rows
    per_syn_2 = sum(r["seconds"] for r in p2) / args.rows
    print()
    print(
        f"measured per synapse and worker: phase 1 {per_syn_1 * 1e9:.1f} ns, phase 2 {per_syn_2 * 1e9:.1f} ns; "
        f"source {source_bytes / args.rows:.1f} B, scratch {scratch / args.rows:.1f} B"
    )
    print(
        f"assumed: source read {args.read_mb_s:g} MB/s and scratch {args.scratch_mb_s:g} MB/s per worker (shared "
        f"filesystem or object storage), {args.open_ms:g} ms per scratch-file open, {args.task_ms:g} ms scheduler "
        f"overhead per task, ranges of {RANGE_ROWS:,} synapses, buckets of {SYNAPSES_PER_BUCKET:,}, I/O not "
        f"overlapped with compute (upper bound)"
    )
    print()
    print(
        "| synapses | workers | compute | I/O | phase-2 fan-in (ranges x buckets opens) | scheduler | projected wall |"
    )
    print("|---|---|---|---|---|---|---|")
    for rows in (337_312_429, 10**10, 10**12):
        for workers in (8, 64, 512):
            p = projection(rows, workers, per_syn_1, per_syn_2, source_bytes / args.rows, scratch / args.rows, args)
            print(
                f"| {rows:.3g} | {workers} | {fmt_seconds(p['compute'])} | {fmt_seconds(p['io'])} | "
                f"{fmt_seconds(p['fan_in'])} | {fmt_seconds(p['scheduling'])} | **{fmt_seconds(p['total'])}** |"
            )
    if identical.startswith("DIFFERENT"):
        sys.exit(1)


if __name__ == "__main__":
    main()
