"""Benchmark: a full feature-store build (all families) from a synthetic source of a chosen size.

    python benchmarks/store_build.py --synapses 20_000_000 [--cells 120_000] [--data benchmarks/_data]

The synthetic snapshot is generated once and cached under --data. Each build runs in its own
subprocess, so the peak RSS printed is that build's alone (the child's VmHWM on Linux: getrusage would carry
the parent's peak across fork and exec). Prints one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
from cellfeatures.config.model import from_dict
from cellfeatures.store.store import FeatureStore
cfg = from_dict(json.loads(sys.argv[1]))
t0 = time.perf_counter()
result = FeatureStore(sys.argv[2]).build(cfg)
hwm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": result.manifest["rows"], "peak": hwm[0] if hwm else None,
                  "features": len(result.manifest["features"]), "family_seconds":
                  {k: v["seconds"] for k, v in result.manifest["families"].items()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synapses", type=lambda s: int(s.replace("_", "")), default=20_000_000)
    parser.add_argument("--cells", type=lambda s: int(s.replace("_", "")), default=120_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent / "_data")
    args = parser.parse_args()

    from cellfeatures.sources.synthetic.cells import SyntheticSpec
    from cellfeatures.sources.synthetic.snapshot import write_synthetic_snapshot

    spec = SyntheticSpec(n_cells=args.cells, n_synapses=args.synapses, seed=args.seed)
    t0 = time.perf_counter()
    path = write_synthetic_snapshot(spec, args.data / f"synthetic-{spec.key()}")
    generate_s = time.perf_counter() - t0
    config = {
        "name": "bench",
        "source": {"kind": "snapshot", "path": str(path)},
        "features": {
            "nucleus": {"area_table": "nucleus_functional_area_assignment", "depth_method": "standard_transform"},
            "synapses": {
                "synapse_table": "synapses_pni_2",
                "target_table": "synapse_target_predictions_ssa",
                "partner_label_table": "aibs_metamodel_celltypes_v661",
            },
            "functional": {},
            "proofreading": {},
        },
    }
    with tempfile.TemporaryDirectory() as store:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(config), store], check=True, capture_output=True, text=True
        )
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak_kib <= before:
            raise SystemExit("could not measure the child's peak RSS")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["peak"]:
        peak_kib = result["peak"] // 1024
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"cpus={__import__('os').cpu_count()}"
    )
    print(f"snapshot: {path} (generated or found in {generate_s:.1f} s)")
    print()
    print("| synapses | cells | build wall s | synapses/s | peak RSS GiB | features | per family (s) |")
    print("|---|---|---|---|---|---|---|")
    per_family = ", ".join(f"{k} {v:.1f}" for k, v in result["family_seconds"].items())
    print(
        f"| {args.synapses:,} | {args.cells:,} | {result['seconds']:.1f} | "
        f"{args.synapses / result['seconds']:,.0f} | {peak_kib / 2**20:.2f} | {result['features']} | {per_family} |"
    )


if __name__ == "__main__":
    main()
