"""`cellfeatures doctor`: versions, folders and write access, token presence, server reachability."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellfeatures.cli import app
from cellfeatures.doctor import run_checks, server_check, token_check

runner = CliRunner()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class _Answer(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(401)  # a CAVE server without a token: reachable all the same
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_reachable_server_is_ok_and_an_unreachable_one_is_a_calm_note() -> None:
    httpd = HTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        up = server_check(f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
    assert up.state == "ok" and "reachable (HTTP 401)" in up.detail
    down = server_check(_closed_port(), timeout=2)
    assert down.state == "note" and "not reachable" in down.detail and "offline is fine" in down.detail


def test_the_token_is_reported_present_never_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CAVE_TOKEN", raising=False)
    assert token_check().state == "note"
    monkeypatch.setenv("CAVE_TOKEN", "secret-abc-123")
    check = token_check()
    assert check.state == "ok" and "secret-abc-123" not in check.detail


def test_doctor_reports_folders_and_exits_0_when_nothing_is_wrong(in_tmp: Path) -> None:
    out = runner.invoke(app, ["doctor", "--server", _closed_port(), "--json"])
    assert out.exit_code == 0, out.output
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["feature store"]["state"] == "ok" and str(in_tmp / "features") in checks["feature store"]["detail"]
    assert checks["datasets"]["state"] == "ok" and checks["cache"]["state"] == "ok"
    assert checks["CAVE server"]["state"] == "note"
    assert "polars" in checks["packages"]["detail"] and "caveclient" in checks["packages"]["detail"]
    text = runner.invoke(app, ["doctor", "--server", _closed_port()])
    assert text.exit_code == 0 and "feature store:" in text.output


def test_an_unwritable_store_is_a_problem_and_exit_1(in_tmp: Path) -> None:
    (in_tmp / "blocker").write_text("a file where the store's folder should be")
    (in_tmp / "cfg.toml").write_text(
        '[source]\nkind = "sample"\n[features.nucleus]\n[store]\nroot = "blocker/features"\n'
    )
    checks = run_checks(in_tmp / "cfg.toml", _closed_port())
    store = next(c for c in checks if c.name == "feature store")
    assert store.state == "problem" and "not writable" in store.detail
    out = runner.invoke(app, ["doctor", "--config", "cfg.toml", "--server", _closed_port()])
    assert out.exit_code == 1 and "problem" in out.output
