"""A CAVE-compatible HTTP server for tests: serves a snapshot directory with the real protocol.

What it reproduces, because real users meet it (see ../shared/DESIGN.md §5):
- info service datastack record whose `local_server` points back at this server;
- materialization API versions [2, 3], server version >= 5.13.0, version metadata with a timestamp;
- table list, table metadata (voxel resolution, reference tables), annotation counts, `count=true` queries;
- queries answered as an Arrow IPC stream (`Content-Type: data.arrow`) with `dataframe_resolution`,
  filters (in / not in / equal / greater / less / greater-equal / less-equal), select_columns,
  split or unsplit positions, `desired_resolution`;
- the row limit: at most `row_limit` rows, in no fixed order, with only an HTTP `Warning` header;
- 401 on a wrong token, and injected 5xx errors every `fail_every`-th query;
- it never redirects (a redirect looks like an auth failure to caveclient).

Every request is logged (`requests`) so tests can count what a client did.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from flask import Flask, Response, request
from werkzeug.serving import make_server

from cellfeatures.sources.snapshot import SnapshotSource

REFERENCE_SUFFIX = ("_ref", "_ssa", "_assignment")


@dataclass
class ServerConfig:
    snapshot: Path
    datastack: str = "minnie65_public"
    version: int = 1300
    time_stamp: str = "2025-01-13T10:10:01.286229"
    token: str = "test-token-0123456789abcdef"
    row_limit: int = 200_000
    fail_every: int = 0  # 0: never; n: every n-th query request answers `fail_status`
    fail_status: int = 503
    retry_after_s: int | None = None  # sent as Retry-After (whole seconds, as HTTP says) with injected failures
    announce_cap: bool = True  # False: cap silently (no Warning header), as some proxies do
    drop_rows: int = 0  # answer this many rows fewer than asked, silently (an inconsistent server)
    delay_s: float = 0.0  # answer every data query this much later (a slow server)
    voxel_resolution: tuple[float, float, float] = (4.0, 4.0, 40.0)


@dataclass
class RequestLog:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    status: int = 0


@dataclass
class CaveTestServer:
    config: ServerConfig
    requests: list[RequestLog] = field(default_factory=list)
    _query_count: int = 0
    capped_responses: int = 0  # answers cut at row_limit (sent with a Warning header)

    def __post_init__(self) -> None:
        self.source = SnapshotSource(self.config.snapshot)
        self.tables = {t: self.source.scan(t).collect() for t in self.source.tables()}
        self.app = self._make_app()
        self._server: Any = None
        self._url = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL; stays readable after stop() so tests can compare messages with it."""
        return self._url

    def start(self) -> CaveTestServer:
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> CaveTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def queries(self, kind: str = "query") -> list[RequestLog]:
        """Logged data queries (kind='query') or count queries (kind='count')."""
        out = []
        for r in self.requests:
            if r.path.endswith("/query"):
                is_count = r.query.get("count", "").lower() == "true"
                if (kind == "count") == is_count:
                    out.append(r)
            elif kind == "count" and r.path.endswith("/count"):
                out.append(r)
        return out

    # ------------------------------------------------------------ protocol
    def _make_app(self) -> Flask:
        app = Flask("cave-test-server")
        cfg = self.config
        mat3 = f"/materialize/api/v3/datastack/{cfg.datastack}"
        mat2 = f"/materialize/api/v2/datastack/{cfg.datastack}"

        @app.before_request
        def _auth_and_log() -> Response | None:
            body = request.get_json(silent=True) if request.method == "POST" else None
            entry = RequestLog(request.method, request.path, dict(request.args), body)
            with self._lock:
                self.requests.append(entry)
            header = request.headers.get("Authorization", "")
            if header != f"Bearer {cfg.token}":
                entry.status = 401
                return Response(json.dumps({"error": "invalid token"}), status=401, mimetype="application/json")
            return None

        def js(obj: Any) -> Response:
            return Response(json.dumps(obj), mimetype="application/json")

        @app.get("/info/api/versions")
        def info_versions() -> Response:
            return js([2])

        @app.get(f"/info/api/v2/datastack/full/{cfg.datastack}")
        def datastack_info() -> Response:
            return js(
                {
                    "aligned_volume": {
                        "name": "minnie65_phase3",
                        "id": 1,
                        "image_source": "precomputed://x",
                        "description": "test",
                    },
                    "local_server": self.url,
                    "synapse_table": "synapses_pni_2",
                    "soma_table": "nucleus_detection_v0",
                    "segmentation_source": "graphene://" + self.url + "/segmentation/table/minnie3_v1",
                    "viewer_site": self.url,
                    "analysis_database": None,
                    "viewer_resolution_x": 4.0,
                    "viewer_resolution_y": 4.0,
                    "viewer_resolution_z": 40.0,
                    "description": "test datastack",
                }
            )

        @app.get("/materialize/api/versions")
        def mat_versions() -> Response:
            return js([2, 3])

        @app.get("/materialize/version")
        def mat_server_version() -> Response:
            return js("5.13.0")

        @app.get(f"{mat3}/versions")
        @app.get(f"{mat2}/versions")
        def versions() -> Response:
            return js([cfg.version])

        def version_meta() -> dict[str, Any]:
            return {
                "version": cfg.version,
                "time_stamp": cfg.time_stamp,
                "expires_on": "2099-01-01T00:00:00.000000",
                "valid": True,
                "datastack": cfg.datastack,
                "status": "AVAILABLE",
                "id": cfg.version,
            }

        @app.get(f"{mat3}/version/<int:v>")
        @app.get(f"{mat2}/version/<int:v>")
        def version_metadata(v: int) -> Response:
            if v != cfg.version:
                return Response(
                    json.dumps({"error": f"version {v} not found"}), status=404, mimetype="application/json"
                )
            return js(version_meta())

        @app.get(f"{mat3}/metadata")
        @app.get(f"{mat2}/metadata")
        def versions_metadata() -> Response:
            return js([version_meta()])

        @app.get(f"{mat2}/version/<int:v>/tables")
        def tables(v: int) -> Response:
            return js(sorted(self.tables))

        def table_meta(name: str) -> dict[str, Any]:
            ref = "target_id" in self.tables[name].columns
            return {
                "table_name": name,
                "schema": "cell_type_local" if ref else "synapse",
                "schema_type": "cell_type_local",
                "reference_table": "nucleus_detection_v0" if ref else None,
                "voxel_resolution_x": cfg.voxel_resolution[0],
                "voxel_resolution_y": cfg.voxel_resolution[1],
                "voxel_resolution_z": cfg.voxel_resolution[2],
                "valid": True,
                "created": "2020-11-04T00:00:00",
                "description": f"test table {name}",
                "annotation_table": name,
                "aligned_volume": "minnie65_phase3",
                "voxel_resolution": list(cfg.voxel_resolution),
            }

        @app.get(f"{mat3}/version/<int:v>/table/<name>/metadata")
        def metadata(v: int, name: str) -> Response:
            if name not in self.tables:
                return Response(json.dumps({"error": "no table"}), status=404, mimetype="application/json")
            return js(table_meta(name))

        @app.get(f"{mat3}/version/<int:v>/tables/metadata")
        def all_metadata(v: int) -> Response:
            return js([table_meta(t) for t in sorted(self.tables)])

        @app.get(f"{mat2}/version/<int:v>/table/<name>/count")
        def count(v: int, name: str) -> Response:
            return js(self.tables[name].height)

        @app.post(f"{mat3}/version/<int:v>/table/<name>/query")
        def query(v: int, name: str) -> Response:
            with self._lock:
                self._query_count += 1
                n = self._query_count
            if cfg.delay_s:
                time.sleep(cfg.delay_s)
            if cfg.fail_every and n % cfg.fail_every == 0:
                self.requests[-1].status = cfg.fail_status
                headers = {"Retry-After": str(cfg.retry_after_s)} if cfg.retry_after_s is not None else {}
                return Response("<html><body>injected failure</body></html>", status=cfg.fail_status, headers=headers)
            if v != cfg.version or name not in self.tables:
                return Response(json.dumps({"error": "not found"}), status=404, mimetype="application/json")
            body = request.get_json(silent=True) or {}
            frame = self._filter(self.tables[name], body, name)
            if request.args.get("count", "").lower() == "true":  # answered as a one-row Arrow frame
                return self._arrow_table(pa.table({"count": [frame.height]}), {})
            return self._arrow_response(frame, body, n)

        return app

    def _filter(self, frame: pl.DataFrame, body: dict[str, Any], name: str) -> pl.DataFrame:
        def table_filter(key: str) -> dict[str, Any]:
            value = body.get(key) or {}
            return value.get(name, value) if isinstance(value, dict) else {}

        ops = {
            "filter_in_dict": lambda c, v: pl.col(c).is_in(v),
            "filter_notin_dict": lambda c, v: ~pl.col(c).is_in(v),
            "filter_equal_dict": lambda c, v: pl.col(c) == v,
            "filter_greater_dict": lambda c, v: pl.col(c) > v,
            "filter_less_dict": lambda c, v: pl.col(c) < v,
            "filter_greater_equal_dict": lambda c, v: pl.col(c) >= v,
            "filter_less_equal_dict": lambda c, v: pl.col(c) <= v,
        }
        for key, op in ops.items():
            for column, value in table_filter(key).items():
                frame = frame.filter(op(column, value))
        return frame

    def _arrow_response(self, frame: pl.DataFrame, body: dict[str, Any], n: int) -> Response:
        cfg = self.config
        headers: dict[str, str] = {}
        resolution = list(cfg.voxel_resolution)
        desired = body.get("desired_resolution")
        position_cols = [c for c in frame.columns if c.endswith(("_position_x", "_position_y", "_position_z"))]
        if desired:
            scale = {
                "x": cfg.voxel_resolution[0] / desired[0],
                "y": cfg.voxel_resolution[1] / desired[1],
                "z": cfg.voxel_resolution[2] / desired[2],
            }
            frame = frame.with_columns([pl.col(c) * scale[c[-1]] for c in position_cols])
            resolution = list(desired)
        headers["dataframe_resolution"] = ", ".join(str(float(r)) for r in resolution)
        if body.get("select_columns"):
            keep = [
                c
                for c in frame.columns
                if c in body["select_columns"] or any(c.startswith(s + "_") for s in body["select_columns"])
            ]
            frame = frame.select(keep)
        if body.get("limit"):
            frame = frame.head(int(body["limit"]))
        # no fixed order: shuffle per request, then apply the server's row limit
        frame = frame.sample(fraction=1.0, shuffle=True, seed=n)
        if frame.height > cfg.row_limit:
            if cfg.announce_cap:
                headers["Warning"] = f'299 - "201 - Limited query to {cfg.row_limit} rows"'
            with self._lock:
                self.capped_responses += 1
            frame = frame.head(cfg.row_limit)
        if cfg.drop_rows and frame.height:
            frame = frame.head(max(0, frame.height - cfg.drop_rows))
        if request.args.get("split_positions", "").lower() != "true":
            prefixes = sorted({c[: -len("_x")] for c in position_cols})
            frame = frame.with_columns(
                [
                    pl.concat_list(
                        [
                            pl.col(f"{p}_x"),
                            pl.col(f"{p}_y"),
                            pl.col(f"{p}_z"),
                        ]
                    ).alias(p)
                    for p in prefixes
                ]
            ).drop([f"{p}_{a}" for p in prefixes for a in "xyz"])
        return self._arrow_table(frame.to_arrow(), headers)

    @staticmethod
    def _arrow_table(table: pa.Table, headers: dict[str, str]) -> Response:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue(), headers={**headers, "Content-Type": "data.arrow"})
