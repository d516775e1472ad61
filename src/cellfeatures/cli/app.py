"""The Typer application and its global options; the command modules register themselves on `app`."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts name [store] and [dataset.<name>] sections: no markup may eat them
    help="Versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65). "
    "Start with `cellfeatures run` (the embedded sample, offline), then `cellfeatures doctor` if anything fails.",
)


def _show_version(value: bool) -> None:
    if value:
        from cellfeatures._version import PIPELINE_CODE_VERSION, __version__

        print(f"cellfeatures {__version__} (pipeline code {PIPELINE_CODE_VERSION})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65)."""
    import contextlib
    import signal

    from cellfeatures.cli.common import on_sigterm

    # SIGTERM runs the same cleanup as Ctrl-C (hidden build folders removed, one line, exit 143); outside
    # the main thread (an embedding host) signal() raises ValueError and its handlers are left alone
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, on_sigterm)
