"""Random synapses over a fixed set of roots: the shared input of the synapse kernel tests."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import polars as pl

from cellfeatures.pipelines.synapse_records import RootSets

RNG = np.random.default_rng(7)
CELLS = np.sort(RNG.choice(np.arange(10**17, 10**17 + 5000), 300, replace=False)).astype(np.int64)
NUCLEUS = np.union1d(CELLS, RNG.choice(np.arange(10**17, 10**17 + 6000), 200)).astype(np.int64)
EXC = np.sort(RNG.choice(NUCLEUS, 80, replace=False))
INH = np.sort(np.setdiff1d(RNG.choice(NUCLEUS, 80, replace=False), EXC))
ROOTS = RootSets(*(pl.Series(v) for v in (CELLS, NUCLEUS, EXC, INH)))


def synapses(n: int) -> pl.DataFrame:
    pool = np.arange(10**17, 10**17 + 7000)
    frame = pl.DataFrame(
        {
            "pre_root_id": RNG.choice(pool, n),
            "post_root_id": RNG.choice(pool, n),
            "size_vx": RNG.integers(0, 400, n),
            "tag_code": RNG.integers(0, 4, n).astype(np.uint8),
            **{f"ctr_{a}_nm": RNG.uniform(0, 1e5, n) for a in "xyz"},
        }
    )
    missing = pl.int_range(n) % 23 == 0
    return frame.with_columns(pl.when(missing).then(None).otherwise(pl.col("size_vx")).alias("size_vx"))


POSITIONS = RNG.uniform(0, 1e5, (CELLS.size, 3))


def in_chunks(frame: pl.DataFrame, *cuts: int) -> pl.DataFrame:
    """`frame` as polars hands out a scan of several row groups: every column in the same chunks."""
    edges = [0, *cuts, frame.height]
    parts = [frame.slice(a, b - a) for a, b in pairwise(edges)]
    return pl.concat(parts, rechunk=False)
