"""Benchmark: the static-exports road, from a served gzip CSV to synapse features, in one run.

    python benchmarks/static_exports.py --rows 20_000_000 [--cells 120_000] [--data benchmarks/_data]
                                        [--steps download,floor_stdlib,floor_isal,convert,pandas,family]

1. Writes (once, cached under --data) a synapse export in the published format: a synthetic
   synapses_pni_2 of --rows rows with the real table's 18 columns in a shuffled order, as a headerless
   gzip CSV (level 6, as `gzip` writes it) + its `column,type` sidecar.
2. Serves it from a local HTTP server (tests/static_server.py: Range, HEAD, ETag) and runs each step in
   its own subprocess (so the peak RSS it reports is its own):
   - download:     cellfeatures' resumable HTTP download of the file;
   - floor_stdlib: the standard library decompressing the file to nothing, one thread (the issue's floor);
   - floor_isal:   ISA-L (the library cellfeatures uses) decompressing to nothing;
   - convert:      cellfeatures' conversion: decompress + parse by the sidecar + Parquet parts by id range;
   - convert_cells: the same keeping only synapses of the labelled cells (keep = "cells"), like pandas below;
   - pandas:       what people do today (MICrONS-datacleaner style): pandas.read_csv(chunksize=500_000)
                   over the gzip, keeping the synapses of the labelled cells;
   - family:       the synapse feature family (engine auto) on the converted parts, and its scan floor.
3. Prints one table (rows/s, MB/s of compressed input, peak RSS, ratio to the stdlib floor) and a
   projection of each step to the full table's 337,312,429 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cellfeatures  # noqa: F401  (tunes polars' allocator, as the CLI does)

# isort: split
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SYN = "synapses_pni_2"
FULL_ROWS = 337_312_429
BUCKET = "mat_dbs/public/minnie65_phase3_v1"


def _compressor() -> tuple[object, str]:
    try:
        from zlib_ng import zlib_ng  # same deflate stream format, written faster (generation only)

        return zlib_ng.compressobj(6, zlib_ng.DEFLATED, 31), "zlib-ng level 6"
    except ImportError:
        return zlib.compressobj(6, zlib.DEFLATED, 31), "zlib level 6"


def write_synapse_export(snapshot: Path, folder: Path, seed: int) -> tuple[Path, Path]:
    """The snapshot's synapse parts as one export (shuffled column order, t/f, empty nulls)."""
    from cellfeatures.sources.static.exports import export_file_names, export_text, pg_type_of

    data_name, header_name = export_file_names(SYN)
    folder.mkdir(parents=True, exist_ok=True)
    parts = sorted((snapshot / SYN).glob("*.parquet"))
    extra = [
        pl.lit("2020-11-04 06:48:57.134102").str.to_datetime(time_zone="UTC").alias("created"),
        pl.lit(None, dtype=pl.Int64).alias("superceded_id"),
    ]
    columns = pl.scan_parquet(parts[0]).with_columns(extra).collect_schema()
    order = list(columns)
    random.Random(seed).shuffle(order)
    (folder / header_name).write_text("".join(f"{c},{pg_type_of(columns[c])}\n" for c in order))
    compressor, _name = _compressor()
    tmp = folder / (data_name + ".tmp")
    with tmp.open("wb") as fh:
        for part in parts:
            frame = pl.read_parquet(part).with_columns(extra).select(order)
            fh.write(compressor.compress(export_text(frame).write_csv(include_header=False, null_value="").encode()))  # type: ignore[attr-defined]
        fh.write(compressor.flush())  # type: ignore[attr-defined]
    tmp.rename(folder / data_name)
    return folder / data_name, folder / header_name


# ---------------------------------------------------------------- steps (run inside the child)


def step_download(url: str, data: Path, work: Path) -> dict:
    from cellfeatures.sources.static.download import HttpClient, download

    client = HttpClient()
    remote = client.head(url)
    result = download(client, remote, work / "download.csv.gz")
    (work / "download.csv.gz").unlink()
    return {"bytes": remote.size, **result}


def step_floor_stdlib(url: str, data: Path, work: Path) -> dict:
    decompressor = zlib.decompressobj(31)
    out = 0
    with data.open("rb", buffering=0) as fh:
        while chunk := fh.read(4 << 20):
            out += len(decompressor.decompress(chunk))
    return {"text_bytes": out}


def step_floor_isal(url: str, data: Path, work: Path) -> dict:
    from isal import igzip

    out = 0
    with igzip.open(data, "rb") as fh:
        while chunk := fh.read(32 << 20):
            out += len(chunk)
    return {"text_bytes": out}


def step_convert(url: str, data: Path, work: Path) -> dict:
    from cellfeatures.sources.static.convert import convert_export
    from cellfeatures.sources.static.exports import parse_sidecar

    header = data.with_name(data.name.replace(".csv.gz", "_header.csv"))
    out = work / "converted" / SYN
    out.mkdir(parents=True)
    result = convert_export(data, parse_sidecar(header.read_text(), SYN, str(header)), SYN, out)
    parquet = sum(f.stat().st_size for f in out.iterdir())
    return {
        "rows": result.rows,
        "parts": len(result.parts),
        "in_id_order": result.in_id_order,
        "parquet_bytes": parquet,
    }


def step_convert_cells(url: str, data: Path, work: Path) -> dict:
    """The conversion keeping only the synapses of the labelled cells (keep = "cells"): pandas' job, exactly."""
    from cellfeatures.sources.static.convert import RowFilter, convert_export
    from cellfeatures.sources.static.exports import parse_sidecar

    header = data.with_name(data.name.replace(".csv.gz", "_header.csv"))
    roots = pl.read_parquet(work / "labelled_roots.parquet")["root_id"].implode()
    touches = pl.col("pre_pt_root_id").is_in(roots) | pl.col("post_pt_root_id").is_in(roots)
    out = work / "converted_cells"
    out.mkdir()
    columns = parse_sidecar(header.read_text(), SYN, str(header))
    result = convert_export(data, columns, SYN, out, keep=RowFilter(("pre_pt_root_id", "post_pt_root_id"), touches))
    return {"rows": result.rows_read, "kept": result.rows}


def step_pandas(url: str, data: Path, work: Path) -> dict:
    import pandas as pd

    header = data.with_name(data.name.replace(".csv.gz", "_header.csv"))
    names = [line.split(",")[0] for line in header.read_text().splitlines()]
    roots = set(pl.read_parquet(work / "labelled_roots.parquet")["root_id"].to_list())
    kept, rows = [], 0
    for chunk in pd.read_csv(data, header=None, names=names, chunksize=500_000, compression="gzip"):
        rows += len(chunk)
        kept.append(chunk[chunk["pre_pt_root_id"].isin(roots) | chunk["post_pt_root_id"].isin(roots)])
    return {"rows": rows, "kept": int(sum(len(k) for k in kept))}


def step_family(url: str, data: Path, work: Path) -> dict:
    from synapses import run_polars  # benchmarks/synapses.py: the family as `cellfeatures build` runs it

    run_polars(work / "snapshot", work, work / "family.parquet")
    return {"cells": pl.scan_parquet(work / "family.parquet").select(pl.len()).collect().item()}


def step_family_floor(url: str, data: Path, work: Path) -> dict:
    from synapses import run_floor

    run_floor(work / "snapshot", work, work / "floor.parquet")
    return {}


STEPS = {
    "download": step_download,
    "floor_stdlib": step_floor_stdlib,
    "floor_isal": step_floor_isal,
    "convert": step_convert,
    "convert_cells": step_convert_cells,
    "pandas": step_pandas,
    "family_floor": step_family_floor,
    "family": step_family,
}


def child(step: str, url: str, data: str, work: str) -> None:
    from synapses import own_peak_rss_bytes

    t0 = time.perf_counter()
    info = STEPS[step](url, Path(data), Path(work))
    seconds = time.perf_counter() - t0
    print(json.dumps({"step": step, "seconds": seconds, "peak_rss_bytes": own_peak_rss_bytes(), **info}))


# ---------------------------------------------------------------- parent


def link_snapshot(synthetic: Path, work: Path) -> None:
    """The converted synapse parts beside the synthetic snapshot's other tables: what the family reads."""
    snap = work / "snapshot"
    snap.mkdir()
    (snap / SYN).symlink_to(work / "converted" / SYN)
    for name in (
        "nucleus_detection_v0.parquet",
        "aibs_metamodel_celltypes_v661.parquet",
        "synapse_target_predictions_ssa",
    ):
        (snap / name).symlink_to(synthetic / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    number = lambda s: int(s.replace("_", ""))  # noqa: E731
    parser.add_argument("--rows", type=number, default=20_000_000)
    parser.add_argument("--cells", type=number, default=120_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "_data")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from tests.static_server import StaticServer

    from cellfeatures.sources.synthetic.cells import SyntheticSpec
    from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

    spec = SyntheticSpec(
        n_cells=args.cells, n_synapses=args.rows, seed=args.seed, chunk_rows=5_000_000, tagged_fraction=0.6058
    )
    t0 = time.perf_counter()
    synthetic = write_synthetic_snapshot(spec, args.data / f"synthetic-{spec.key()}")
    exports_root = args.data / f"exports-{spec.key()}"
    folder = exports_root / BUCKET / "v1300"
    data = folder / "synapses_pni_2_v1_filtered_view.csv.gz"
    if not data.exists():
        write_synapse_export(synthetic, folder, args.seed)
    generated = time.perf_counter() - t0
    gz_bytes = data.stat().st_size
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=args.data) as tmp, StaticServer(exports_root) as server:
        work = Path(tmp)
        url = f"{server.base_url}/v1300/{data.name}"
        nuclei = pl.read_parquet(synthetic / "nucleus_detection_v0.parquet").filter(pl.col("pt_root_id") != 0)
        labelled = pl.read_parquet(synthetic / "aibs_metamodel_celltypes_v661.parquet").head(1500)
        roots = nuclei.join(labelled.select(pl.col("target_id").alias("id")), on="id").select(root_id="pt_root_id")
        roots.write_parquet(work / "labelled_roots.parquet")
        for step in [s for s in args.steps.split(",") if s]:
            if step.startswith("family") and not (work / "snapshot").exists():
                link_snapshot(synthetic, work)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", step, url, str(data), str(work)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(f"{step} failed:\n{proc.stderr[-3000:]}")
            results[step] = json.loads(proc.stdout.strip().splitlines()[-1])
    print_table(args, results, gz_bytes, generated)


def print_table(args: argparse.Namespace, results: dict[str, dict], gz_bytes: int, generated: float) -> None:
    floor = results.get("floor_stdlib", {}).get("seconds")
    text = results.get("floor_stdlib", {}).get("text_bytes") or results.get("floor_isal", {}).get("text_bytes")
    print(
        f"\n{args.rows:,} synapses; export {gz_bytes / 1e9:.2f} GB gzip"
        + (f" ({text / 1e9:.2f} GB of text, {gz_bytes / args.rows:.1f} B/row gzip)" if text else "")
        + f"; generated/cached in {generated:.0f} s; {platform.node()}, {len(os.sched_getaffinity(0))} cores"
    )
    print("| step | rows | wall s | rows/s | MB/s gzip | peak RSS GiB | x stdlib floor | projected 337M |")
    print("|---|---|---|---|---|---|---|---|")
    for step, r in results.items():
        s = r["seconds"]
        ratio = f"{s / floor:.2f}" if floor else "-"
        projected = s * FULL_ROWS / args.rows
        peak = f"{r['peak_rss_bytes'] / 2**30:.2f}" if r.get("peak_rss_bytes") else "-"
        print(
            f"| {step} | {args.rows:,} | {s:.1f} | {args.rows / s / 1e6:.2f}M | {gz_bytes / s / 1e6:.0f} | {peak} | "
            f"{ratio} | {projected / 60:.1f} min |"
        )
    if "convert" in results:
        parquet = results["convert"]["parquet_bytes"]
        print(
            f"Parquet parts: {parquet / 1e9:.2f} GB ({parquet / gz_bytes:.2f}x the gzip; projected 337M: "
            f"{parquet * FULL_ROWS / args.rows / 1e9:.1f} GB, gzip {gz_bytes * FULL_ROWS / args.rows / 1e9:.1f} GB)"
        )
    for step in ("convert", "convert_cells"):
        if "pandas" in results and step in results:
            print(f"{step} is {results['pandas']['seconds'] / results[step]['seconds']:.1f}x faster than pandas")
    if "pandas" in results and "convert_cells" in results:
        same = results["pandas"]["kept"] == results["convert_cells"]["kept"]
        print(f"rows kept: pandas {results['pandas']['kept']:,}, convert_cells {results['convert_cells']['kept']:,}")
        if not same:
            sys.exit("the two ways kept different rows")
    if "family" in results and "family_floor" in results:
        print(f"family x its scan floor: {results['family']['seconds'] / results['family_floor']['seconds']:.2f}")


if __name__ == "__main__":
    main()
