"""`cellfeatures doctor`: what this installation sees, so a user (or a helper) can say why something fails.

Each check is one line with a state: `ok`, `note` (worth knowing, not a fault: no token, offline) or
`problem` (something the user must fix: a store that is not writable). Being offline is reported
calmly: the sample and local snapshots need no network.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from cellfeatures._util.runtime import available_cores
from cellfeatures.config.model import Config, load_config, packaged_config_path
from cellfeatures.config.paths import find_project

PACKAGES = ("polars", "pyarrow", "pandera", "caveclient", "scikit-learn", "pandas", "numpy", "joblib")
DEFAULT_SERVER = "https://global.daf-apis.com"


@dataclass
class Check:
    name: str
    state: str  # ok | note | problem
    detail: str


def _writable(path: Path) -> tuple[bool, str]:
    """Whether files can be created under `path` (created if missing), by trying: permissions lie on some mounts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True):
            pass
        return True, ""
    except OSError as exc:
        return False, exc.strerror or str(exc)


def _folder_check(name: str, path: Path, what: str) -> Check:
    existed = path.exists()
    ok, why = _writable(path)
    if not ok:
        return Check(name, "problem", f"{path} is not writable ({why}): {what} cannot be written there")
    return Check(name, "ok", f"{path} (writable{'' if existed else ', created now'})")


def token_check() -> Check:
    """Whether a CAVE token is available, never what it is."""
    if os.environ.get("CAVE_TOKEN"):
        return Check("CAVE token", "ok", "present ($CAVE_TOKEN)")
    secrets = Path("~/.cloudvolume/secrets").expanduser()
    files = sorted(p.name for p in secrets.glob("*cave-secret.json")) if secrets.is_dir() else []
    if files:
        return Check("CAVE token", "ok", f"present (caveclient secret file {secrets / files[0]})")
    return Check(
        "CAVE token",
        "note",
        "none (needed only for a CAVE source: export CAVE_TOKEN=...; the sample and snapshots need none)",
    )


def server_check(server: str, timeout: float = 3.0) -> Check:
    """Can the CAVE server be reached at all (any HTTP answer counts: 401 means reachable)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(server, method="HEAD"), timeout=timeout):
            pass
    except urllib.error.HTTPError as exc:
        return Check("CAVE server", "ok", f"{server} reachable (HTTP {exc.code})")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "CAVE server",
            "note",
            f"{server} not reachable ({reason}); offline is fine for the sample and local snapshots",
        )
    return Check("CAVE server", "ok", f"{server} reachable")


def run_checks(config_path: str | os.PathLike[str] | None = None, server: str | None = None) -> list[Check]:
    from cellfeatures._version import PIPELINE_CODE_VERSION, __version__
    from cellfeatures.config.model import default_config
    from cellfeatures.sources.synthetic.snapshot import default_cache_dir
    from cellfeatures.store.store import FeatureStore

    checks = [Check("cellfeatures", "ok", f"{__version__} (pipeline code {PIPELINE_CODE_VERSION})")]
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            checks.append(Check(package, "problem", "not installed: pip install -e . installs it"))
    checks.append(Check("packages", "ok", ", ".join(versions)))
    checks.append(Check("cores", "ok", f"{available_cores()} usable by this process (os.sched_getaffinity)"))
    project = find_project()
    checks.append(
        Check(
            "project",
            "ok" if project else "note",
            str(project) if project else "none found (using the working directory)",
        )
    )
    try:
        cfg: Config = load_config(Path(config_path)) if config_path else default_config()
    except Exception as exc:  # the doctor reports every failure instead of stopping at it
        checks.append(Check("config", "problem", f"{config_path}: {exc}"))
        return checks
    packaged = cfg.path is not None and cfg.path.resolve() == packaged_config_path("sample").resolve()
    checks.append(Check("config", "ok", f"{cfg.path}{' (the packaged sample config)' if packaged else ''}"))
    checks.append(_folder_check("feature store", Path(cfg.store_root), "feature versions"))
    store = FeatureStore(config=cfg)
    good, damaged = store.scan_versions()
    state = "problem" if damaged else "ok"
    detail = f"{len(good)} version(s)" + (f", {len(damaged)} damaged (see `cellfeatures verify`)" if damaged else "")
    checks.append(Check("versions", state, detail))
    checks.append(_folder_check("datasets", Path(cfg.datasets_root), "datasets and reports"))
    checks.append(_folder_check("cache", default_cache_dir(), "the sample's generated tables and CAVE snapshots"))
    checks.append(token_check())
    target = server or (cfg.source.get("server") if cfg.source.get("kind") == "cave" else None) or DEFAULT_SERVER
    checks.append(server_check(str(target)))
    return checks


def as_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
