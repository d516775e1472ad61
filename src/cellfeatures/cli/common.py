"""What every command shares: the consoles, the common options, config/store lookup and the one error
handler that turns our errors, the operating system's and the engine's into `error: ...` and exit 2.

Must not: know any command's logic.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape

from cellfeatures.config.model import Config, default_config, load_config
from cellfeatures.errors import CellFeaturesError, ConfigError, os_error_code

if TYPE_CHECKING:
    from cellfeatures.store.store import FeatureStore


def make_console(stderr: bool = False) -> Console:
    """Terminal width on a TTY; wide lines when piped or written to a file (names stay whole).

    Markup is off by default: table names, paths, messages and data are printed as they are (a
    `[source]` in a message must not vanish, a stray `[/` must not crash). The few lines that style
    text pass `markup=True` and put every interpolated value through `escape`.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, markup=False, width=None if stream.isatty() else 200)


console = make_console()
err = make_console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (default: configs/sample.toml)")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="feature-store root (default: the config's [store] root)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout (progress goes to stderr)")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="fail when the source lacks a table the config names (default: skip it)")
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="run the big synapse plan on this Dask scheduler (tcp://host:8786)"),
]
DatasetArg = Annotated[str, typer.Argument(help="dataset name, <name>/<id>, id prefix or path")]


def config_of(path: Path | None) -> Config:
    return load_config(path) if path else default_config()


def store_of(config: Config | None, store: Path | None) -> FeatureStore:
    """--store when given, else the store the config (or the project's default config) names."""
    from cellfeatures.store.store import FeatureStore

    return FeatureStore(store) if store else FeatureStore(config=config or default_config())


def with_scheduler(config: Config, address: str | None) -> Config:
    if not address:
        return config
    return config.with_value("execution.engine", "dask").with_value("execution.address", address)


def print_json(obj: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colours, no wrapping."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def listed(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [v.strip() for v in text.split(",") if v.strip()] if text is not None else None


def int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None


# What a command turns into "error: ..." and exit code 2 instead of a traceback: our own errors, the
# operating system's (permissions, a full disk, a missing file) and data the engine could not read.
CLI_ERRORS = (CellFeaturesError, OSError, pl.exceptions.PolarsError, ValueError)


def describe_error(exc: BaseException) -> str:
    """One clear message: what failed and on which file, without a traceback."""
    if isinstance(exc, CellFeaturesError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        code = os_error_code(exc)
        if code == errno.EROFS:
            return f"read-only file system{where}: write the store, datasets or output somewhere writable"
        if code == errno.ENOSPC:
            return f"no space left on the device{where}; nothing half-written was published: free space and rerun"
        if isinstance(exc, PermissionError) or code == errno.EACCES:
            return f"permission denied{where}: the store, dataset or output directory is not writable by you"
        return f"{exc.strerror or exc}{where}"
    if isinstance(exc, pl.exceptions.PolarsError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the data could not be processed ({type(exc).__name__}: {first})"
    return f"{type(exc).__name__}: {exc}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that every `finally` and cleanup runs (no `.building-*` left)."""


def on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("terminated (SIGTERM)")


@contextmanager
def clean_errors() -> Iterator[None]:
    """Run a command body; an expected failure prints one line (`error: ...`) and exits with code 2;
    Ctrl-C or SIGTERM print one calm line and exit 130 / 143 (work already finished is kept)."""
    try:
        yield
    except CLI_ERRORS as exc:
        # never wrapped: the whole message is one line, whatever the path lengths (grep, CI logs)
        err.print(f"[bold red]error:[/] {escape(describe_error(exc))}", markup=True, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except Exception as exc:
        if type(exc).__name__ not in ("TerminatedWorkerError", "BrokenProcessPool"):
            raise
        err.print(
            "a worker process died (Ctrl-C reached it, or the system killed it: out of memory?); nothing "
            "half-written was published and finished fits are cached: run the same command again to resume",
            soft_wrap=True,
        )
        raise typer.Exit(code=130) from None
    except KeyboardInterrupt as exc:
        done = f" ({exc.args[0]})" if exc.args and not isinstance(exc, Terminated) else ""
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        err.print(
            f"{what}{done}: nothing half-written was published; finished versions, datasets and fits are kept, "
            f"so running the same command again resumes",
            soft_wrap=True,
        )
        raise typer.Exit(code=143 if isinstance(exc, Terminated) else 130) from None
