"""Benchmark: the synapse feature family at scale, against DuckDB and pandas, in one run.

    python benchmarks/synapses.py --rows 100_000_000 [--cells 120_000] [--data benchmarks/_data]
                                  [--engines floor,polars,polars_lazy,polars_bucketed,duckdb,pandas]
                                  [--pandas-max 10_000_000] [--repeat 1]

1. Generates (once, cached under --data) a partitioned synthetic snapshot shaped like synapses_pni_2 +
   synapse_target_predictions_ssa + nucleus_detection_v0 + a model cell-type table (no position columns:
   the benchmarked family is counts, sizes, tags, partners and partner classes).
2. Runs each engine in its own subprocess (so the peak RSS it reports is its own):
   - floor:  scan + decode of the needed columns only (what any engine must at least do);
   - polars: the project's synapse pipeline (cellfeatures.pipelines.synapses), as `cellfeatures build` runs it
     (engine "auto": range-partitioned and bucketed above 2M rows, one frame below);
   - polars_lazy / polars_bucketed: the same pipeline forced to one strategy (their results must agree);
   - duckdb: the same aggregation in SQL over the same Parquet files;
   - pandas: the same in pandas (only up to --pandas-max rows).
3. Checks that every engine produced identical per-cell numbers (integers equal, floats within 1e-9
   relative), and prints one table: engine, rows, wall s, imports s, rows/s, peak RSS, speed-up over DuckDB,
   ratio to the floor. Each engine's clock starts once its libraries are imported, as polars is for the
   floor (IMPORTS): the imports are a fixed cost per process, printed in their own column.

With --repeat N every engine runs N times, in turn (floor, polars, ..., floor, polars, ...): wall s is the
median (min-max), and x floor the median of each round's own ratio (min-max). The floor is a few seconds
at 100M, and a machine whose speed drifts by ±15% from one minute to the next moves one run's ratio by as
much: a round pairs each engine with a floor measured beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# first: tunes polars' allocator for this process as the CLI does (cellfeatures/runtime.py)
import cellfeatures  # noqa: F401

# isort: split
import polars as pl

SYN, TAGS, NUC, LABELS = (
    "synapses_pni_2",
    "synapse_target_predictions_ssa",
    "nucleus_detection_v0",
    "aibs_metamodel_celltypes_v661",
)
CONFIG = {"synapse_table": SYN, "target_table": TAGS, "partner_label_table": LABELS, "soma_distance": False}
DIRECTIONS = ("in", "out")

# ---------------------------------------------------------------- engines (run inside the child)


def prepare_inputs(snapshot: Path, work: Path) -> None:
    """Identity map and partner classes, computed once with the project's code and shared by every engine."""
    from cellfeatures.identity import identity_map
    from cellfeatures.pipelines.nucleus import load_identity_nucleus
    from cellfeatures.pipelines.synapses import partner_classes
    from cellfeatures.sources.snapshot import SnapshotSource

    source = SnapshotSource(snapshot)
    identity = identity_map(load_identity_nucleus(source, NUC))
    identity.select("nucleus_id", "root_id", "attributable", "missing_root").write_parquet(work / "identity.parquet")
    partner_classes(source.scan(LABELS), identity).collect().write_parquet(work / "partner_classes.parquet")


def run_polars(snapshot: Path, work: Path, out: Path, engine: str = "auto", **options: int) -> None:
    from cellfeatures.identity import identity_map
    from cellfeatures.pipelines import synapses
    from cellfeatures.pipelines.base import BuildContext
    from cellfeatures.pipelines.nucleus import load_identity_nucleus
    from cellfeatures.sources.snapshot import SnapshotSource

    source = SnapshotSource(snapshot)
    ctx = BuildContext(source=source, identity=identity_map(load_identity_nucleus(source, NUC)))
    cfg = {**CONFIG, "validate_max_rows": 0, "engine": engine, **options}
    synapses.build(ctx, cfg).sink_parquet(out, engine="streaming")


def run_polars_lazy(snapshot: Path, work: Path, out: Path) -> None:
    """The straightforward single-plan strategy (streaming engine), for comparison."""
    run_polars(snapshot, work, out, engine="lazy")


def run_floor(snapshot: Path, work: Path, out: Path) -> None:
    syn = pl.scan_parquet(snapshot / SYN / "*.parquet").select(
        pl.col("id").sum(),
        pl.col("valid").sum(),
        pl.col("pre_pt_root_id").sum(),
        pl.col("post_pt_root_id").sum(),
        pl.col("size").sum(),
    )
    tags = pl.scan_parquet(snapshot / TAGS / "*.parquet").select(pl.col("target_id").sum(), pl.col("tag").len())
    pl.concat(
        [syn.collect(engine="streaming").cast(pl.Float64), tags.collect(engine="streaming").cast(pl.Float64)],
        how="horizontal",
    ).write_parquet(out)


def run_duckdb(snapshot: Path, work: Path, out: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    query = f"""
    WITH cells AS (SELECT root_id, nucleus_id FROM read_parquet('{work}/identity.parquet') WHERE attributable),
    nuc_roots AS (SELECT DISTINCT root_id FROM read_parquet('{work}/identity.parquet') WHERE NOT missing_root),
    pclass AS (SELECT root_id, partner_class FROM read_parquet('{work}/partner_classes.parquet')),
    syn AS (
        SELECT id, pre_pt_root_id AS pre, post_pt_root_id AS post, size
        FROM read_parquet('{snapshot}/{SYN}/*.parquet')
        WHERE coalesce(valid, true) AND pre_pt_root_id <> post_pt_root_id
          AND pre_pt_root_id <> 0 AND post_pt_root_id <> 0
    ),
    tags AS (SELECT target_id, tag FROM read_parquet('{snapshot}/{TAGS}/*.parquet') WHERE coalesce(valid, true)),
    tagged AS (SELECT s.*, t.tag FROM syn s LEFT JOIN tags t ON s.id = t.target_id),
    dir AS (
        SELECT c.nucleus_id, 'in' AS d, pre AS partner, size, tag FROM tagged JOIN cells c ON post = c.root_id
        UNION ALL
        SELECT c.nucleus_id, 'out' AS d, post AS partner, size, tag FROM tagged JOIN cells c ON pre = c.root_id
    ),
    enriched AS (
        SELECT dir.*, nr.root_id IS NOT NULL AS has_nuc, pc.partner_class
        FROM dir LEFT JOIN nuc_roots nr ON dir.partner = nr.root_id LEFT JOIN pclass pc ON dir.partner = pc.root_id
    )
    SELECT nucleus_id, d, count(*) AS n, avg(size::DOUBLE) AS size_mean, median(size::DOUBLE) AS size_median,
           sum(size) AS size_sum, count(tag) AS tagged, count_if(tag = 'spine') AS spine,
           count_if(tag = 'shaft') AS shaft, count_if(tag = 'soma') AS soma,
           count(DISTINCT partner) AS partners, count(DISTINCT partner) FILTER (WHERE has_nuc) AS partners_nuc,
           count(partner_class) AS labelled, count_if(partner_class = 'excitatory') AS exc,
           count_if(partner_class = 'inhibitory') AS inh
    FROM enriched GROUP BY nucleus_id, d
    """
    raw = pl.from_arrow(con.execute(query).to_arrow_table())
    assert isinstance(raw, pl.DataFrame)
    finalize(raw, work).write_parquet(out)


def run_pandas(snapshot: Path, work: Path, out: Path) -> None:
    import pandas as pd

    identity = pd.read_parquet(work / "identity.parquet")
    cells = identity[identity.attributable][["root_id", "nucleus_id"]]
    nuc_roots = set(identity.loc[~identity.missing_root, "root_id"])
    pclass = pd.read_parquet(work / "partner_classes.parquet").set_index("root_id")["partner_class"]
    syn = pd.concat(
        [
            pd.read_parquet(p, columns=["id", "valid", "pre_pt_root_id", "post_pt_root_id", "size"])
            for p in sorted((snapshot / SYN).glob("*.parquet"))
        ]
    )
    tags = pd.concat(
        [pd.read_parquet(p, columns=["target_id", "tag", "valid"]) for p in sorted((snapshot / TAGS).glob("*.parquet"))]
    )
    syn = syn[
        syn.valid.fillna(True)
        & (syn.pre_pt_root_id != syn.post_pt_root_id)
        & (syn.pre_pt_root_id != 0)
        & (syn.post_pt_root_id != 0)
    ]
    syn = syn.merge(tags[tags.valid.fillna(True)][["target_id", "tag"]], left_on="id", right_on="target_id", how="left")
    frames = []
    for d, own, other in (("in", "post_pt_root_id", "pre_pt_root_id"), ("out", "pre_pt_root_id", "post_pt_root_id")):
        s = syn.merge(cells, left_on=own, right_on="root_id")
        pc = s[other].map(pclass)
        s = s.assign(
            partner=s[other],
            has_nuc=s[other].isin(nuc_roots),
            pclass=pc,
            spine=s.tag.eq("spine"),
            shaft=s.tag.eq("shaft"),
            soma=s.tag.eq("soma"),
            exc=pc.eq("excitatory"),
            inh=pc.eq("inhibitory"),
        )
        g = s.groupby("nucleus_id")
        agg = (
            pd.DataFrame(
                {
                    "n": g.size(),
                    "size_mean": g["size"].mean(),
                    "size_median": g["size"].median(),
                    "size_sum": g["size"].sum(),
                    "tagged": g["tag"].count(),
                    "spine": g["spine"].sum(),
                    "shaft": g["shaft"].sum(),
                    "soma": g["soma"].sum(),
                    "partners": g["partner"].nunique(),
                    "partners_nuc": s[s.has_nuc].groupby("nucleus_id")["partner"].nunique(),
                    "labelled": g["pclass"].count(),
                    "exc": g["exc"].sum(),
                    "inh": g["inh"].sum(),
                }
            )
            .fillna({"partners_nuc": 0})
            .reset_index()
        )
        agg["d"] = d
        frames.append(agg)
    finalize(pl.from_pandas(pd.concat(frames)), work).write_parquet(out)


def finalize(raw: pl.DataFrame, work: Path) -> pl.DataFrame:
    """Raw per-(cell, direction) aggregates -> the project's feature names and definitions."""
    cells = pl.read_parquet(work / "identity.parquet").filter("attributable").select("nucleus_id")
    out = cells
    for d in DIRECTIONS:
        p = f"syn_{d}_"
        r = raw.filter(pl.col("d") == d)
        n = pl.col("n").cast(pl.Float64)
        tagged = pl.col("tagged").cast(pl.Float64)
        labelled = pl.col("labelled").cast(pl.Float64)
        part = r.select(
            pl.col("nucleus_id").cast(pl.Int64),
            pl.col("n").cast(pl.Int64).alias(f"{p}count"),
            pl.col("size_mean").cast(pl.Float64).alias(f"{p}size_mean_vx"),
            pl.col("size_median").cast(pl.Float64).alias(f"{p}size_median_vx"),
            pl.col("size_sum").cast(pl.Int64).alias(f"{p}size_sum_vx"),
            pl.col("partners").cast(pl.Int64).alias(f"{p}partners"),
            (n / pl.col("partners")).alias(f"{p}per_partner"),
            (pl.col("partners_nuc") / pl.col("partners")).alias(f"{p}frac_partners_with_nucleus"),
            (tagged / n).alias(f"{p}frac_tagged"),
            *[pl.when(tagged > 0).then(pl.col(t) / tagged).alias(f"{p}frac_{t}") for t in ("spine", "shaft", "soma")],
            (labelled / n).alias(f"{p}frac_partner_labelled"),
            pl.when(labelled > 0).then(pl.col("exc") / labelled).alias(f"{p}frac_exc"),
            pl.when(labelled > 0).then(pl.col("inh") / labelled).alias(f"{p}frac_inh"),
        )
        out = out.join(part, on="nucleus_id", how="left")
    zero = [c for c in out.columns if c.endswith(("_count", "_partners", "_size_sum_vx"))]
    return out.with_columns([pl.col(c).fill_null(0) for c in zero])


def run_polars_bucketed(snapshot: Path, work: Path, out: Path) -> None:
    """The range-partitioned, bucketed strategy forced on (at least 4 ranges), whatever the size."""
    rows = pl.scan_parquet(snapshot / SYN / "*.parquet").select(pl.len()).collect().item()
    run_polars(snapshot, work, out, engine="bucketed", range_rows=max(1, rows // 4))


ENGINES = {
    "floor": run_floor,
    "polars": run_polars,
    "polars_lazy": run_polars_lazy,
    "polars_bucketed": run_polars_bucketed,
    "duckdb": run_duckdb,
    "pandas": run_pandas,
}


def own_peak_rss_bytes() -> int | None:
    """Peak RSS of this process image (Linux VmHWM, reset by exec), or None elsewhere.

    Why not getrusage: Linux carries ru_maxrss across fork and exec, so a child forked from a parent that
    has just generated the data reports the parent's peak as its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# What each engine imports before its clock starts, as polars is for the floor: a fixed cost per process
# (0.8 s for cellfeatures' pipelines, pandera and numba included), not a cost of scanning synapses. It is
# timed apart and printed in its own column.
PIPELINE = ("cellfeatures.pipelines.synapses", "cellfeatures.pipelines.synapse_ranges")
IMPORTS = {
    "floor": (),
    "polars": PIPELINE,
    "polars_lazy": PIPELINE,
    "polars_bucketed": PIPELINE,
    "duckdb": ("duckdb",),
    "pandas": ("pandas",),
}


def child(engine: str, snapshot: str, work: str, out: str) -> None:
    import importlib
    import resource

    t0 = time.perf_counter()
    for module in IMPORTS[engine]:
        importlib.import_module(module)
    t1 = time.perf_counter()
    ENGINES[engine](Path(snapshot), Path(work), Path(out))
    seconds = time.perf_counter() - t1
    peak = own_peak_rss_bytes() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"engine": engine, "seconds": seconds, "import_seconds": t1 - t0, "peak_rss_bytes": peak}))


# ---------------------------------------------------------------- parent


def compare(reference: pl.DataFrame, other: pl.DataFrame) -> float:
    """Largest relative difference over all features (0.0 = identical); raises if cells or ints differ."""
    ref = reference.sort("nucleus_id")
    oth = other.select(ref.columns).sort("nucleus_id")
    if ref["nucleus_id"].to_list() != oth["nucleus_id"].to_list():
        raise AssertionError("different cells")
    worst = 0.0
    for col in ref.columns[1:]:
        a, b = ref[col], oth[col]
        if (a.is_null() != b.is_null()).any():
            raise AssertionError(f"{col}: nulls differ")
        if a.dtype.is_integer():
            if not (a.fill_null(0) == b.fill_null(0)).all():
                raise AssertionError(f"{col}: integers differ")
            continue
        diff = ((a - b).abs() / a.abs().clip(lower_bound=1e-12)).max()
        worst = max(worst, float(diff or 0.0))
    if worst > 1e-9:
        raise AssertionError(f"relative difference {worst:.2e} above 1e-9")
    return worst


def warm_page_cache(snapshot: Path) -> None:
    """Read every input file once, so that each engine starts with them in the page cache (the stated
    condition of every table): DuckDB's 15 GiB at 100M evicts them, and the floor that ran after it in
    the next round read from disk (3.9-4.6 s against 2.4)."""
    for path in sorted(snapshot.rglob("*.parquet")):
        with path.open("rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


def paired_ratios(engine_runs: list[dict], floor_runs: list[dict]) -> list[float]:
    """Each round's engine time over the same round's floor time (rounds where both ran)."""
    floors = {r["round"]: r["seconds"] for r in floor_runs}
    return [r["seconds"] / floors[r["round"]] for r in engine_runs if r["round"] in floors]


def spread(values: list[float], fmt: str) -> str:
    """'m' for one value, 'm (lo-hi)' for several: the median and the range; '' for none."""
    if not values:
        return ""
    m = statistics.median(values)
    if len(values) == 1:
        return format(m, fmt)
    return f"{format(m, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--cells", type=lambda s: int(s.replace("_", "")), default=120_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "_data")
    parser.add_argument("--engines", default="floor,polars,duckdb,pandas")
    parser.add_argument("--pandas-max", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    # synapse_target_predictions_ssa has 204,331,842 rows for synapses_pni_2's 337,312,429
    parser.add_argument("--tagged-fraction", type=float, default=round(204_331_842 / 337_312_429, 4))
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every engine in turn (medians printed)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

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
    tag_rows = pl.scan_parquet(snapshot / TAGS / "*.parquet").select(pl.len()).collect().item()
    engines = [e for e in args.engines.split(",") if e and not (e == "pandas" and args.rows > args.pandas_max)]
    runs: dict[str, list[dict]] = {engine: [] for engine in engines}
    frames: dict[str, pl.DataFrame] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_inputs(snapshot, work)
        for round_ in range(max(1, args.repeat)):
            for engine in engines:
                out = work / f"{engine}.parquet"
                warm_page_cache(snapshot)
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", engine, str(snapshot), str(work), str(out)],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    print(f"{engine} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    continue
                runs[engine].append({**json.loads(proc.stdout.strip().splitlines()[-1]), "round": round_})
                if engine not in frames:
                    frames[engine] = pl.read_parquet(out)
        checks = {}
        reference = frames.get("polars")
        for engine in ("polars_lazy", "polars_bucketed", "duckdb", "pandas"):
            if engine in frames and reference is not None:
                try:
                    checks[engine] = f"identical (max rel. diff {compare(reference, frames[engine]):.1e})"
                except AssertionError as exc:
                    checks[engine] = f"DIFFERENT: {exc}"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"polars {pl.__version__}" + (f", duckdb {__import__('duckdb').__version__}" if runs.get("duckdb") else "")
    )
    print(
        f"input: {args.rows:,} synapses + {tag_rows:,} target tags, {args.cells:,} nuclei "
        f"({snapshot}, generated or found in {generated:.1f} s)"
    )
    for engine, verdict in checks.items():
        print(f"check {engine} vs polars: {verdict}")
    print()
    rounds = f", {args.repeat} rounds: median (min-max)" if args.repeat > 1 else ""
    imported = "imports s (not in wall)"
    print(f"| engine | rows | wall s{rounds} | {imported} | rows/s | peak RSS GiB | speed-up vs DuckDB | x floor |")
    print("|---|---|---|---|---|---|---|---|")
    duck = statistics.median([r["seconds"] for r in runs["duckdb"]]) if runs.get("duckdb") else None
    for engine in engines:
        if not runs[engine]:
            print(f"| {engine} | {args.rows:,} | failed | | | | | |")
            continue
        seconds = [r["seconds"] for r in runs[engine]]
        wall = statistics.median(seconds)
        speed = f"{duck / wall:.2f}x" if duck else ""
        ratios = paired_ratios(runs[engine], runs.get("floor", []))
        peak = max(r["peak_rss_bytes"] for r in runs[engine])
        imports = statistics.median([r["import_seconds"] for r in runs[engine]])
        print(
            f"| {engine} | {args.rows:,} | {spread(seconds, '.1f')} | {imports:.2f} | {args.rows / wall:,.0f} | "
            f"{peak / 2**30:.2f} | {speed} | {spread(ratios, '.2f')} |"
        )
    if any(v.startswith("DIFFERENT") for v in checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
