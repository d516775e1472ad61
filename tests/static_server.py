"""An HTTP server for tests that serves a folder of static exports the way a public bucket does.

What it reproduces: GET and HEAD with `Content-Length` and an `ETag`; `Range: bytes=N-` / `N-M` answered
206 with `Content-Range`; 404 for a missing object; the Cloud Storage JSON listing API
(`/storage/v1/b/<bucket>/o?prefix=...`). Faults on demand: a 503 every `fail_every`-th data request,
the first `drop_bodies` data bodies cut after `drop_after` bytes (the connection closed mid-body), a
throttle (bytes per second) so a test can kill a client mid-download, and a server that ignores Range.
Every request is logged (method, path, Range header, status, body bytes sent) for tests to assert on.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BUCKET_PREFIX = "mat_dbs/public/minnie65_phase3_v1"


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int
    sent: int = 0


@dataclass
class StaticServer:
    root: Path  # served at "/": root/mat_dbs/public/minnie65_phase3_v1/v1300/<files>
    fail_every: int = 0
    drop_bodies: int = 0
    drop_after: int = 100_000
    drop_only: str = ""  # drop only bodies of paths containing this (default: any data file)
    throttle_bps: int = 0
    ignore_range: bool = False
    log: list[Logged] = field(default_factory=list)
    _data_requests: int = 0
    _drops_done: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/{BUCKET_PREFIX}"

    def data_gets(self, name: str) -> list[Logged]:
        return [r for r in self.log if r.method == "GET" and r.path.endswith(name)]

    def __enter__(self) -> StaticServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                server._serve(self, head=True)

            def do_GET(self) -> None:
                server._serve(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------ handlers
    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: bytes, head: bool, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        rng = h.headers.get("Range")
        entry = Logged("HEAD" if head else "GET", path, rng, 0)
        with self._lock:
            self.log.append(entry)
        if path.startswith("/storage/v1/b/"):
            entry.status = 200
            self._reply(h, 200, self._listing(path, parse_qs(parts.query)), head, {"Content-Type": "application/json"})
            return
        file = self.root / path.lstrip("/")
        if not file.is_file():
            entry.status = 404
            self._reply(h, 404, b"<Error>NoSuchKey</Error>", head, {"Content-Type": "application/xml"})
            return
        data_request = not head and path.endswith(".csv.gz")
        if data_request:
            with self._lock:
                self._data_requests += 1
                fail = self.fail_every and self._data_requests % self.fail_every == 0
            if fail:
                entry.status = 503
                self._reply(h, 503, b"try later", head, {"Retry-After": "0"})
                return
        size = file.stat().st_size
        etag = '"' + hashlib.md5(f"{file}:{size}:{file.stat().st_mtime_ns}".encode()).hexdigest() + '"'
        start, end, status = 0, size - 1, 200
        if rng and not self.ignore_range and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a), int(b) if b else size - 1, 206
            if start >= size:
                entry.status = 416
                self._reply(h, 416, b"", head, {"Content-Range": f"bytes */{size}"})
                return
        length = end - start + 1
        h.send_response(status)
        h.send_header("Content-Length", str(length))
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        entry.status = status
        if head:
            return
        with self._lock:
            drop = data_request and self.drop_only in path and self._drops_done < self.drop_bodies
            if drop:
                self._drops_done += 1
        limit = min(length, self.drop_after) if drop else length
        with file.open("rb") as fh:
            fh.seek(start)
            while entry.sent < limit:
                chunk = fh.read(min(64 * 1024, limit - entry.sent))
                try:
                    h.wfile.write(chunk)
                    h.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                entry.sent += len(chunk)
                if self.throttle_bps:
                    time.sleep(len(chunk) / self.throttle_bps)
        if drop:
            h.close_connection = True  # the body ends early: the client sees a dropped connection

    def _listing(self, path: str, query: dict[str, list[str]]) -> bytes:
        bucket = path.split("/")[4]
        prefix = query.get("prefix", [""])[0]
        folder = self.root / bucket / prefix
        items = (
            [{"name": prefix + p.name, "size": str(p.stat().st_size)} for p in sorted(folder.iterdir()) if p.is_file()]
            if folder.is_dir()
            else []
        )
        return json.dumps({"kind": "storage#objects", "items": items}).encode()
