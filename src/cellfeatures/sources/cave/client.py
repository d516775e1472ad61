"""CAVE source: version-pinned, row-cap-safe, resumable fetches through caveclient.

The ONLY module that imports caveclient. It turns a live CAVE datastack into a local snapshot directory
(the `snapshot` source's format) that later builds reuse:

    <out>/<table>.parquet        one file per table, sorted by id, written atomically when complete
    <out>/manifest.json          datastack, materialization version + timestamp, position resolution, tables
    <out>/_fetch/<table>.json    the chunk plan and the chunks done (rows, sha256): what makes a fetch resumable
    <out>/_fetch/<table>/*.parquet  downloaded chunks (removed once the table is complete)

Why chunks: a materialization query returns at most the server's row limit (200,000 on the real
server) in no fixed order, flagged only by an HTTP `Warning` header that caveclient logs and drops.
So every fetch is planned from counts: the id range (or the list of root ids) is split until each chunk's
count is below the limit, every chunk's rows must equal its count, ids must be unique, and the chunks
must add up to the table's count. A fetch that cannot prove it got everything raises; it never returns a
short table.

The plan depends only on counts, so it is deterministic, and it is saved, so a rerun downloads only the
chunks it lacks.

The configured `row_limit` is an upper bound, not a promise: servers differ. A chunk that comes back
short with the server's `Warning: ... Limited query to N rows` (captured from caveclient's logger, so it
never reaches the terminal) teaches the fetcher the real cap; the chunk is split under it and fetched
again, the learned cap is saved in the fetch state (a resumed fetch plans with it) and reported in the
summary. A short answer without that signal is taken once as a silent cap of what came back; a chunk
already within the learned cap that still comes back short means an inconsistent server: an error.

The token comes from $CAVE_TOKEN, else from caveclient's secret file; it is never logged, written, or
shown in an error message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import polars as pl

from cellfeatures._util.names import did_you_mean
from cellfeatures.errors import (
    CaveAuthError,
    CellFeaturesError,
    ConfigError,
    IncompleteFetchError,
    SourceError,
    TableNotFoundError,
    one_line,
)

DEFAULT_SERVER = "https://global.daf-apis.com"
DEFAULT_ROW_LIMIT = 200_000
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 60.0
_CAP_PATTERN = re.compile(r"Limited query to (\d+) rows")


class _WarningCapture(logging.Handler):
    """Collects caveclient's log records (the row-cap Warning header among them) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        messages = getattr(self.local, "messages", None)
        if messages is not None:
            messages.append(record.getMessage())

    def start(self) -> None:
        self.local.messages = []

    def take(self) -> list[str]:
        out: list[str] = getattr(self.local, "messages", None) or []
        self.local.messages = None
        return out


_CAPTURE = _WarningCapture()


def _install_capture() -> None:
    """Route the `caveclient` loggers to the capture, not to stderr (our progress owns the terminal)."""
    logger = logging.getLogger("caveclient")
    if _CAPTURE not in logger.handlers:
        logger.addHandler(_CAPTURE)
    logger.propagate = False


def learned_cap(messages: list[str]) -> int | None:
    """The row cap a server announced in a captured `Warning: ... Limited query to N rows`, if any."""
    caps = [int(m.group(1)) for text in messages if (m := _CAP_PATTERN.search(text))]
    return min(caps) if caps else None


Progress = Callable[[str, int, int], None]  # (table, chunks done, chunks total)


def resolve_token(explicit: str | None = None) -> str | None:
    """$CAVE_TOKEN wins; None lets caveclient read its own secret file (~/.cloudvolume/secrets)."""
    return explicit or os.environ.get("CAVE_TOKEN") or None


class _Redactor:
    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds a 429/503 answer asks us to wait (`Retry-After`), bounded; None when it says nothing."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S) if value is not None else None
    except ValueError:
        return None


def _auth_message(server: str) -> str:
    return (
        f"the CAVE server {server} rejected the token (HTTP 401/403), or none was found. Set a valid token "
        f"with `export CAVE_TOKEN=<your token>` (create one at {server}/auth/api/v1/create_token after "
        f"logging in), or save it once with caveclient: "
        f"`CAVEclient(server_address='{server}').auth.save_token(token=...)`."
    )


class CaveFetcher:
    """Row-cap-safe, retrying, resumable fetches of one pinned materialization version."""

    def __init__(
        self,
        datastack: str,
        server: str = DEFAULT_SERVER,
        version: int | None = None,
        token: str | None = None,
        row_limit: int = DEFAULT_ROW_LIMIT,
        position_resolution_nm: tuple[float, float, float] = (4.0, 4.0, 40.0),
        retries: int = 5,
        backoff_s: float = 0.2,
        batch_size: int = 500,
    ) -> None:
        from caveclient import CAVEclient  # the one place caveclient is imported

        _install_capture()
        self.datastack = datastack
        self.server = server.rstrip("/")
        self.row_limit = row_limit
        self.configured_row_limit = row_limit
        self.learned_row_cap: int | None = None
        self.target = max(1, int(row_limit * 0.8))  # headroom: a chunk at exactly the limit is ambiguous
        self.resolution = tuple(float(r) for r in position_resolution_nm)
        self.retries = retries
        self.backoff_s = backoff_s
        self.batch_size = batch_size
        token = resolve_token(token)
        self._redact = _Redactor(token)
        self.requests = 0
        try:
            self.client = self._retry(
                lambda: CAVEclient(datastack, server_address=self.server, auth_token=token, write_server_cache=False),
                "connect",
            )
            available = [int(v) for v in self._retry(lambda: self.client.materialize.get_versions(), "list versions")]
            if version is not None and int(version) not in available:
                raise ConfigError(
                    f"materialization version {version} is not available on {self.server} for {datastack!r} "
                    f"(available: {', '.join(map(str, sorted(available))) or 'none'}); versions expire: pin one "
                    f"that is listed"
                )
            self.version = int(version if version is not None else max(available))
            self.timestamp = self._retry(lambda: self.client.materialize.get_timestamp(self.version), "timestamp")
        except CellFeaturesError:  # including CaveAuthError: already clear and redacted
            raise
        except Exception as exc:
            raise SourceError(
                self._redact(f"cannot reach CAVE datastack {datastack!r} at {self.server}: {exc}")
            ) from None

    # ------------------------------------------------------------ requests
    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        """Run a request, retrying transient failures with exponential backoff; auth failures end at once."""
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                self.requests += 1
                return call()
            except Exception as exc:
                status = _status(exc)
                if status in (401, 403):
                    raise CaveAuthError(_auth_message(self.server)) from None
                transient = status in TRANSIENT_STATUS or type(exc).__name__ in (
                    "ConnectionError",
                    "Timeout",
                    "ReadTimeout",
                    "ChunkedEncodingError",
                    "RetryError",
                )
                if not transient or attempt == self.retries:
                    raise SourceError(self._redact(f"{what} failed on {self.server}: {one_line(exc)}")) from None
                last = exc
                time.sleep(_retry_after(exc) or self.backoff_s * 2**attempt)
        raise SourceError(self._redact(f"{what}: {last}"))  # pragma: no cover

    def _query(self, table: str, filters: dict[str, dict[str, Any]], count: bool = False) -> Any:
        kwargs: dict[str, Any] = {
            "materialization_version": self.version,
            "merge_reference": False,
            "metadata": False,
            "split_positions": True,
            "desired_resolution": list(self.resolution),
        }
        for key, value in filters.items():
            if value:
                kwargs[key] = value
        if count:
            kwargs["get_counts"] = True

        def call() -> Any:
            _CAPTURE.start()
            try:
                return self.client.materialize.query_table(table, **kwargs)
            finally:
                cap = learned_cap(_CAPTURE.take())
                if cap is not None:
                    self.learn_cap(cap)

        return self._retry(call, f"query {table}")

    def learn_cap(self, cap: int) -> None:
        """Plan every later chunk under a row cap the server showed (never above the configured limit)."""
        cap = max(1, int(cap))
        if cap < self.row_limit:
            self.row_limit = cap
            self.learned_row_cap = cap
            self.target = max(1, int(cap * 0.8))

    def count(self, table: str, filters: dict[str, dict[str, Any]] | None = None) -> int:
        """Rows matching the filters (a count query: cheap, exact, never capped)."""
        result = self._query(table, filters or {}, count=True)
        if hasattr(result, "iloc"):
            return int(result.iloc[0, 0])
        return int(result)

    def tables(self) -> list[str]:
        return list(self._retry(lambda: self.client.materialize.get_tables(version=self.version), "list tables"))

    def check_tables(self, wanted: Iterable[str]) -> None:
        """Every requested table exists in this version, checked before anything is downloaded."""
        have = set(self.tables())
        missing = sorted({t for t in wanted if t and t not in have})
        if missing:
            hints = [f"{t!r}{did_you_mean(t, sorted(have))}" for t in missing]
            raise TableNotFoundError(
                f"{self.datastack} v{self.version} on {self.server} has no table {', '.join(hints)}; nothing was "
                f"downloaded"
            )

    # ------------------------------------------------------------ planning
    def _id_filters(self, lo: int, hi: int, base: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {**base, "filter_greater_equal_dict": {"id": lo}, "filter_less_dict": {"id": hi}}

    def _split_ids(self, table: str, base: dict[str, dict[str, Any]], lo: int, hi: int, n: int) -> list[dict[str, Any]]:
        """Split [lo, hi) until each range counts at most `target` rows (deterministic: counts only)."""
        chunks: list[dict[str, Any]] = []
        stack = [(lo, hi, n)]
        while stack:
            a, b, k = stack.pop()
            if k == 0:
                continue
            if k <= self.target or b - a <= 1:
                chunks.append({"filters": self._id_filters(a, b, base), "expected": k, "lo": a})
                continue
            mid = (a + b) // 2
            left = self.count(table, self._id_filters(a, mid, base))
            stack.append((mid, b, k - left))
            stack.append((a, mid, left))
        return sorted(chunks, key=lambda c: c["lo"])

    def _id_upper_bound(self, table: str, base: dict[str, dict[str, Any]], total: int) -> int:
        hi = 1 << 20
        while self.count(table, {**base, "filter_less_dict": {"id": hi}}) < total:
            hi <<= 4
            if hi > 1 << 62:
                raise IncompleteFetchError(f"table {table!r}: cannot bound its ids (some are not positive?)")
        return hi

    def plan_all(self, table: str) -> tuple[int, list[dict[str, Any]]]:
        total = self.count(table)
        if total == 0:
            return 0, []
        return total, self._split_ids(table, {}, 0, self._id_upper_bound(table, {}, total), total)

    def plan_values(self, table: str, column: str, values: Iterable[int]) -> tuple[int, list[dict[str, Any]]]:
        """Chunks of rows whose `column` is in `values`: batches of values, split further by id if needed."""
        values = sorted(set(int(v) for v in values))
        chunks: list[dict[str, Any]] = []
        total = 0
        stack = [values[i : i + self.batch_size] for i in range(0, len(values), self.batch_size)][::-1]
        while stack:
            batch = stack.pop()
            base = {"filter_in_dict": {column: batch}}
            n = self.count(table, base)
            if n <= self.target:
                if n:
                    chunks.append({"filters": base, "expected": n, "lo": batch[0]})
                total += n
            elif len(batch) > 1:
                half = len(batch) // 2
                stack += [batch[half:], batch[:half]]
            else:  # one value with more rows than a chunk holds: split its id range
                total += n
                chunks += self._split_ids(table, base, 0, self._id_upper_bound(table, base, n), n)
        return total, chunks

    # ------------------------------------------------------------ fetching
    def fetch_chunk(self, table: str, chunk: dict[str, Any]) -> pl.DataFrame:
        """One chunk, proven complete: rows == its count, ids unique. A capped answer is split and refetched."""
        if self.learned_row_cap is not None and chunk["expected"] > self.learned_row_cap:
            frame = self._refetch_split(table, chunk, 0)  # planned before the cap was known: split it first
        else:
            df = self._query(table, chunk["filters"])
            frame = pl.from_pandas(df) if not isinstance(df, pl.DataFrame) else df
            if frame.height < chunk["expected"]:
                frame = self._refetch_split(table, chunk, frame.height)
        if frame.height != chunk["expected"]:
            raise IncompleteFetchError(
                f"table {table!r}: a chunk returned {frame.height} rows but its count is {chunk['expected']}, "
                f"and the server announced no row cap that explains it; filters {_short(chunk['filters'])}"
            )
        if "id" in frame.columns and not frame["id"].is_unique().all():
            raise IncompleteFetchError(f"table {table!r}: duplicated ids within a chunk {_short(chunk['filters'])}")
        return frame

    def _refetch_split(self, table: str, chunk: dict[str, Any], got: int) -> pl.DataFrame:
        """A chunk came back short: learn the cap (announced, else what came back) and fetch it in parts.

        Bounded: the silent-cap guess is made once; a chunk already within the learned cap that still
        comes back short means the server is inconsistent, which is an error, never a short table.
        """
        expected = chunk["expected"]
        cap = self.learned_row_cap
        if cap is None or cap >= expected:  # no known cap explains it
            if cap is not None or got == 0:
                raise IncompleteFetchError(
                    f"table {table!r}: a chunk returned {got} rows but its count is {expected}, within the row cap "
                    f"the server showed ({cap}): the server answers inconsistently; filters {_short(chunk['filters'])}"
                )
            self.learn_cap(got)  # no announcement: assume the server silently caps at what it sent
        id_keys = ("filter_greater_equal_dict", "filter_less_dict")
        base = {k: v for k, v in chunk["filters"].items() if k not in id_keys}
        in_filter = base.get("filter_in_dict", {})
        if len(in_filter) == 1 and len(next(iter(in_filter.values()))) > 1 and id_keys[0] not in chunk["filters"]:
            column, values = next(iter(in_filter.items()))
            parts = []
            for batch in (values[: len(values) // 2], values[len(values) // 2 :]):
                sub = {**base, "filter_in_dict": {column: batch}}
                n = self.count(table, sub)
                if n:
                    parts.append(self.fetch_chunk(table, {"filters": sub, "expected": n, "lo": batch[0]}))
        else:
            lo = chunk["filters"].get(id_keys[0], {}).get("id", 0)
            hi = chunk["filters"].get(id_keys[1], {}).get("id") or self._id_upper_bound(table, base, expected)
            parts = [self.fetch_chunk(table, sub) for sub in self._split_ids(table, base, lo, hi, expected)]
        return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


def _short(filters: dict[str, Any]) -> str:
    text = json.dumps(filters, default=str)
    return text if len(text) < 200 else text[:200] + "..."
