"""What a fetch plans and reports: the per-table fetch spec and the report of one table's fetch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableFetch:
    """How one table is fetched.

    mode "all": the whole table, by id ranges.
    mode "cells": synapses of chosen cells: rows whose `pre_pt_root_id` or `post_pt_root_id` is a root of
        the nuclei listed (as target_id) in `cells_from`, looked up in the nucleus table of the same version.
    mode "values": rows whose `column` is one of the values of another fetched table's column
        (`values_from = "synapses_pni_2.id"`), e.g. target predictions of the fetched synapses.
    """

    table: str
    mode: str = "all"
    cells_from: str = ""
    column: str = ""
    values_from: str = ""


@dataclass
class FetchReport:
    table: str
    rows: int
    chunks: int
    chunks_downloaded: int
    seconds: float
    row_cap: int | None = None  # the server's row cap, when it was found lower than the config's row_limit
