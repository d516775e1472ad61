"""Downloading export files like a careful tool: HTTP Range resume, retries with backoff, size checks.

A download lands in `<name>.part` beside a small `<name>.part.json` (url, size, ETag). A dropped
connection or a killed process resumes from the bytes already on disk (`Range: bytes=N-`), never from
zero and never into a corrupted file: bytes are only ever appended in order, and the file is renamed to
its final name when its size equals the size the server announced. A changed ETag (the file was replaced
on the server) restarts from zero, as does a server that ignores Range.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from cellfeatures.errors import SourceError, TableNotFoundError, one_line, os_error_code

BytesProgress = Callable[[int, int | None], None]  # (bytes so far, total or None)
CHUNK = 1 << 20
RETRY_STATUS = {429, 500, 502, 503, 504}
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int | None
    etag: str | None


class NotFoundError(TableNotFoundError):
    """The server answered 404 for a URL."""


@dataclass
class HttpClient:
    """GETs and HEADs with bounded retries; every wait grows (backoff_s * 2^attempt, at most 30 s)."""

    retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 30.0
    session: requests.Session | None = None

    def __post_init__(self) -> None:
        self.session = self.session or requests.Session()

    def wait(self, attempt: int, response: requests.Response | None) -> None:
        after = response.headers.get("Retry-After") if response is not None else None
        delay = float(after) if after and after.isdigit() else self.backoff_s * 2**attempt
        time.sleep(min(delay, 30.0))

    def request(self, method: str, url: str, headers: dict[str, str] | None = None, stream: bool = False) -> Any:
        """A response with a status below 500 (404 raises NotFoundError); transient failures are retried."""
        assert self.session is not None
        last = ""
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self.session.request(
                    method, url, headers=headers, stream=stream, timeout=self.timeout_s, allow_redirects=True
                )
            except TRANSIENT as exc:
                last = one_line(exc)
            else:
                if response.status_code == 404:
                    raise NotFoundError(f"{url}: not found (HTTP 404)")
                if response.status_code not in RETRY_STATUS:
                    return response
                last = f"HTTP {response.status_code}"
                response.close()
            if attempt < self.retries:
                self.wait(attempt, response)
        raise SourceError(f"{url}: gave up after {self.retries + 1} attempts (last: {last})")

    def text(self, url: str) -> str:
        response = self.request("GET", url)
        if response.status_code != 200:
            raise SourceError(f"{url}: HTTP {response.status_code}")
        return str(response.text)

    def head(self, url: str) -> RemoteFile:
        response = self.request("HEAD", url)
        if response.status_code != 200:
            raise SourceError(f"{url}: HTTP {response.status_code} to HEAD")
        length = response.headers.get("Content-Length")
        return RemoteFile(url, int(length) if length and length.isdigit() else None, response.headers.get("ETag"))


def check_disk_space(folder: Path, needed: int, what: str) -> None:
    """Refuse before starting when `needed` bytes will not fit (a 20 GB download must not fail at 19 GB)."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise SourceError(
            f"not enough disk space for {what}: needs about {needed / 1e9:.1f} GB in {folder}, "
            f"{free / 1e9:.1f} GB free. Free space, or set [source] cache_dir (or --out) to a larger disk; "
            f'keep = "cells" keeps only the synapses of labelled cells'
        )


def no_space_error(exc: BaseException, path: Path) -> SourceError | None:
    """A clear error for a full disk (or a file-size limit), from Python's or the engine's exception."""
    code = os_error_code(exc)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return SourceError(f"the disk is full while writing {path} ({os.strerror(code)}): free space and run again")
    return None


def download(
    client: HttpClient, remote: RemoteFile, dest: Path, progress: BytesProgress | None = None
) -> dict[str, Any]:
    """Download `remote` to `dest`, resuming a previous partial download. Returns what happened."""
    if dest.exists() and remote.size is not None and dest.stat().st_size == remote.size:
        return {"resumed_from": remote.size, "downloaded": 0, "requests": 0}
    part, meta_path = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")
    meta = {"url": remote.url, "size": remote.size, "etag": remote.etag}
    if not part.exists() or not meta_path.exists() or json.loads(meta_path.read_text()) != meta:
        part.write_bytes(b"")  # nothing to resume, or the file changed on the server: from zero
        meta_path.write_text(json.dumps(meta))
    start = part.stat().st_size
    requests_made = 0
    failures = 0
    while remote.size is None or part.stat().st_size < remote.size:
        have = part.stat().st_size
        headers = {"Range": f"bytes={have}-"} if have else {}
        requests_made += 1
        try:
            response = client.request("GET", remote.url, headers=headers, stream=True)
            got = _append_body(response, part, have, remote, progress)
        except TRANSIENT as exc:  # dropped mid-body: resume from what landed
            failures = 0 if part.stat().st_size > have else failures + 1
            if failures > client.retries:
                raise SourceError(f"{remote.url}: download keeps failing at byte {have:,} ({one_line(exc)})") from None
            client.wait(failures, None)
            continue
        except OSError as exc:
            raise (no_space_error(exc, part) or exc) from None
        if remote.size is None and got is not None:
            break  # no announced size: the server's complete body is the file
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        raise SourceError(f"{remote.url}: received {size:,} bytes, the server announced {remote.size:,}")
    os.replace(part, dest)
    meta_path.unlink(missing_ok=True)
    return {"resumed_from": start, "downloaded": size - start, "requests": requests_made}


def _append_body(
    response: requests.Response, part: Path, have: int, remote: RemoteFile, progress: BytesProgress | None
) -> int | None:
    """Append one response's body to `part`; returns the body's size when it was complete."""
    if response.status_code == 416 and remote.size is not None and have >= remote.size:
        return 0
    if have and response.status_code == 200:  # the server ignored Range: start again from zero
        part.write_bytes(b"")
        have = 0
    elif response.status_code not in (200, 206):
        raise SourceError(f"{remote.url}: HTTP {response.status_code} for bytes {have:,}-")
    if response.status_code == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
        raise SourceError(f"{remote.url}: asked for bytes {have:,}-, got {response.headers.get('Content-Range')!r}")
    announced = response.headers.get("Content-Length")
    received = 0
    with part.open("ab") as fh:
        try:
            for chunk in _body_chunks(response):
                fh.write(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(have + received, remote.size)
        finally:  # what arrived before a drop is kept: the next request starts after it
            fh.flush()
            os.fsync(fh.fileno())
    if announced and announced.isdigit() and received != int(announced):
        raise requests.exceptions.ChunkedEncodingError(f"body ended after {received} of {announced} bytes")
    return received


def _body_chunks(response: requests.Response) -> Any:
    """The body as it arrives (urllib3's read1): a dropped connection loses nothing already received.

    `iter_content(n)` waits for n bytes and discards a partial read when the connection drops.
    """
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(64 * 1024)
        return
    try:
        while chunk := read1(CHUNK):
            yield chunk
    except Exception as exc:  # urllib3 errors: a drop mid-body, reported as requests reports it
        raise requests.exceptions.ChunkedEncodingError(one_line(exc)) from None


def bucket_listing(client: HttpClient, folder_url: str) -> list[str] | None:
    """File names under a folder URL, from the Cloud Storage JSON listing API, or None if it has none.

    `https://<host>/<bucket>/<prefix>/` lists as `https://<host>/storage/v1/b/<bucket>/o?prefix=<prefix>/`.
    """
    parts = urlsplit(folder_url)
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    if not bucket:
        return None
    prefix = prefix.rstrip("/") + "/"
    url = f"{parts.scheme}://{parts.netloc}/storage/v1/b/{bucket}/o"
    names: list[str] = []
    token: str | None = None
    try:
        for _ in range(100):  # pages of up to 1000 objects
            params = {"prefix": prefix, "delimiter": "/", **({"pageToken": token} if token else {})}
            assert client.session is not None
            response = client.session.get(url, params=params, timeout=client.timeout_s)
            if response.status_code != 200:
                return None
            data = response.json()
            names += [item["name"][len(prefix) :] for item in data.get("items", [])]
            token = data.get("nextPageToken")
            if not token:
                return names
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
    return names
