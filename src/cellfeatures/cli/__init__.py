"""Command line: one module per command group; each command parses, calls one library function, prints.

    app.py        the Typer app and --version
    common.py     consoles, shared options, config/store lookup, the one error handler
    render.py     tables, progress bars and summaries the commands print
    run_cmd.py    run (the main job)
    store_cmds.py build, list, verify, show, diff, features
    source_cmds.py fetch, sample, synthetic, doctor
    dataset_cmds.py dataset, export, labels
    benchmark_cmds.py baseline, report, score, predict

Must not: compute anything a notebook would also need (that lives in the library, mostly workflows.py).
"""

from cellfeatures.cli import benchmark_cmds, dataset_cmds, run_cmd, source_cmds, store_cmds
from cellfeatures.cli.app import app

__all__ = ["app", "benchmark_cmds", "dataset_cmds", "run_cmd", "source_cmds", "store_cmds"]
