"""A headless Chromium driven over the DevTools protocol: open a page as a reader would, report what broke.

Only what the report test needs: navigate to a file, collect console errors, uncaught exceptions and
every network request, ask the page whether each image decoded, take a screenshot. Chromium is Debian's
package (`.ci/run` installs it); the protocol is spoken over a websocket (websocket-client).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    screenshot: bytes = b""


class _Session:
    def __init__(self, url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))


def visit(page: Path, width: int = 1280, height: int = 2400) -> PageVisit:
    """Open `page` in headless Chromium and report console errors, requests, images and a screenshot."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = _devtools_url(proc)
            session = _Session(url)
            target = session.call("Target.createTarget", url="about:blank")["targetId"]
            sid = session.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                session.call(f"{domain}.enable", sid)
            session.call(
                "Emulation.setDeviceMetricsOverride", sid, width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            session.call("Page.navigate", sid, url=page.resolve().as_uri())
            session.wait_for("Page.loadEventFired")
            result = PageVisit()
            images = session.call(
                "Runtime.evaluate",
                sid,
                expression="JSON.stringify(Array.from(document.images).map(i => "
                "({alt: i.alt, complete: i.complete, width: i.naturalWidth, src: i.src.slice(0, 30)})))",
                returnByValue=True,
            )
            result.images = json.loads(images["result"]["value"])
            title = session.call("Runtime.evaluate", sid, expression="document.title", returnByValue=True)
            result.title = title["result"]["value"]
            shot = session.call("Page.captureScreenshot", sid, format="png")
            result.screenshot = base64.b64decode(shot["data"])
            for event in session.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    result.console_errors.append(json.dumps(params.get("args", []))[:300])
                elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                    result.console_errors.append(params["entry"].get("text", "")[:300])
                elif method == "Runtime.exceptionThrown":
                    result.exceptions.append(json.dumps(params.get("exceptionDetails", {}))[:300])
                elif method == "Network.requestWillBeSent":
                    result.requests.append(params.get("request", {}).get("url", "")[:120])
            session.ws.close()
            return result
        finally:
            proc.kill()
            proc.wait(timeout=30)


def _devtools_url(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """Chromium prints `DevTools listening on ws://...` on stderr once it is ready."""
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if m := re.search(r"DevTools listening on (ws://\S+)", line):
            return m.group(1)
    raise RuntimeError("chromium did not start its DevTools endpoint: " + "".join(seen[-5:]))
