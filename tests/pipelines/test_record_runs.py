"""The spill files between the synapse plan's phases: every run comes back exactly, from local files and from
fsspec ones, across files whose size columns differ in width; a damaged file is named, never half-read.

(That the plans using them give the one-frame plan's matrix bit for bit is tests/pipelines/test_synapses.py
and tests/test_execution.py.)"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from pathlib import Path

import fsspec
import numpy as np
import pytest

from cellfeatures.errors import StoreError
from cellfeatures.pipelines import record_runs as rr
from cellfeatures.pipelines import synapse_kernels as sk
from tests.pipelines.kernel_inputs import POSITIONS, ROOTS, synapses

BUCKET_SHIFT, BUCKETS = 5, 10  # 300 cells in buckets of 32: ten buckets, twenty runs


def records(n: int, positions: bool = True) -> sk.Records:
    table = sk.root_table(ROOTS)
    return sk.scatter(synapses(n), table, BUCKET_SHIFT, BUCKETS, POSITIONS if positions else None)


def test_every_run_comes_back_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rr, "WRITE_PIECE", 1024)  # columns written in many pieces
    written = records(20_000)
    assert written.offsets.size == 2 * BUCKETS + 1 and written.height > 1_000
    rr.write_runs(written.columns(), written.offsets, tmp_path / "range.runs")
    with rr.open_runs([tmp_path / "range.runs"]) as readers:
        buffers = rr.column_buffers(readers)
        for k in range(2 * BUCKETS):
            batch = rr.read_batch(readers, k, buffers)
            expected = written.batch(k)
            assert batch.keys() == expected.keys() == {"cell", "partner", "size", "flags", "dist"}
            for name, column in expected.items():
                assert batch[name].dtype == column.dtype and np.array_equal(batch[name], column), (k, name)


def test_an_empty_run_reads_as_zero_rows(tmp_path: Path) -> None:
    columns = {"cell": np.array([0, 1, 1], np.int32), "partner": np.array([5, 6, 7], np.int64)}
    rr.write_runs(columns, np.array([0, 1, 1, 3]), tmp_path / "r.runs")
    with rr.open_runs([tmp_path / "r.runs"]) as readers:
        buffers = rr.column_buffers(readers)
        assert [rr.read_batch(readers, k, buffers)["partner"].tolist() for k in range(3)] == [[5], [], [6, 7]]


def test_a_batch_spans_every_file_in_order_and_takes_the_widest_size_dtype(tmp_path: Path) -> None:
    parts = [records(3_000, positions=False) for _ in range(3)]
    parts[1].size = parts[1].size.astype(np.int64)  # a range whose sizes needed Int64
    paths = [tmp_path / f"range-{i}.runs" for i in range(3)]
    for part, path in zip(parts, paths, strict=True):
        rr.write_runs(part.columns(), part.offsets, path)
    with rr.open_runs(paths) as readers:
        dtypes, rows = rr.batch_layout(readers)
        assert dtypes["size"] == np.int64 and "dist" not in dtypes
        buffers = rr.column_buffers(readers)
        for k in range(2 * BUCKETS):
            batch = rr.read_batch(readers, k, buffers)
            assert batch["cell"].size == rows[k]
            for name in dtypes:
                expected = np.concatenate([part.batch(k)[name] for part in parts])
                assert np.array_equal(batch[name], expected), (k, name)


def test_files_opened_through_fsspec_read_the_same(tmp_path: Path) -> None:
    written = records(5_000)
    fs = fsspec.filesystem("memory")
    with fs.open("/runs-test/range.runs", "wb") as sink:
        rr.write_runs(written.columns(), written.offsets, sink)
    rr.write_runs(written.columns(), written.offsets, tmp_path / "range.runs")
    with (
        rr.open_runs([lambda: fs.open("/runs-test/range.runs", "rb")], names=["memory://range.runs"]) as remote,
        rr.open_runs([tmp_path / "range.runs"]) as local,
    ):
        a, b = rr.column_buffers(remote), rr.column_buffers(local)
        for k in (0, 7, 2 * BUCKETS - 1):
            got, expected = rr.read_batch(remote, k, a), rr.read_batch(local, k, b)
            assert all(np.array_equal(got[n], expected[n]) for n in expected)
    fs.rm("/runs-test", recursive=True)


def test_a_truncated_file_is_named_not_half_read(tmp_path: Path) -> None:
    written = records(5_000)
    path = tmp_path / "range-00003.runs"
    rr.write_runs(written.columns(), written.offsets, path)
    path.write_bytes(path.read_bytes()[:-100])
    with rr.open_runs([path]) as readers, pytest.raises(StoreError, match=r"range-00003\.runs: truncated"):
        buffers = rr.column_buffers(readers)
        for k in range(2 * BUCKETS):
            rr.read_batch(readers, k, buffers)


@pytest.mark.parametrize(
    ("content", "says"), [(b"PAR1" + b"\0" * 40, "not a cellfeatures runs file"), (b"", "truncated")]
)
def test_a_file_that_is_not_a_runs_file_is_named(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "range-00000.runs"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=f"range-00000.runs: {says}"), rr.open_runs([path]):
        pass


def test_a_damaged_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "range-00000.runs"
    rr.write_runs({"cell": np.arange(3, dtype=np.int32)}, np.array([0, 3]), path)
    data = bytearray(path.read_bytes())
    data[len(rr.MAGIC) + 8] = ord("!")  # the JSON header's first byte
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged runs file header"), rr.open_runs([path]):
        pass


def test_columns_of_different_lengths_are_refused_before_writing(tmp_path: Path) -> None:
    columns = {"cell": np.arange(3, dtype=np.int32), "partner": np.arange(2, dtype=np.int64)}
    with pytest.raises(ValueError, match="every column needs 3 rows"):
        rr.write_runs(columns, np.array([0, 3]), tmp_path / "r.runs")
    assert not (tmp_path / "r.runs").exists()


def test_files_of_one_build_must_share_their_layout(tmp_path: Path) -> None:
    rr.write_runs({"cell": np.arange(3, dtype=np.int32)}, np.array([0, 3]), tmp_path / "a.runs")
    rr.write_runs({"cell": np.arange(3, dtype=np.int32)}, np.array([0, 1, 3]), tmp_path / "b.runs")
    with (
        pytest.raises(StoreError, match="disagree on their layout"),
        rr.open_runs([tmp_path / "a.runs", tmp_path / "b.runs"]),
    ):
        pass


def _free_spill_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cellfeatures-free-spill"]


def _open_descriptors() -> set[str]:
    targets = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed since
            targets.add(os.readlink(f"/proc/self/fd/{fd}"))
    return targets


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="descriptors are listed from /proc")
def test_consumed_files_are_read_after_their_names_are_gone_and_freed_at_the_end(tmp_path: Path) -> None:
    parts = [records(3_000, positions=False) for _ in range(2)]
    paths = [tmp_path / f"range-{i}.runs" for i in range(2)]
    for part, path in zip(parts, paths, strict=True):
        rr.write_runs(part.columns(), part.offsets, path)
    with rr.consume_runs(paths) as readers:
        assert not any(p.exists() for p in paths), "unlinked once open: a build that dies leaves no spill"
        buffers = rr.column_buffers(readers)
        batch = rr.read_batch(readers, 3, buffers)
        expected = np.concatenate([part.batch(3)["partner"] for part in parts])
        assert np.array_equal(batch["partner"], expected)
    for thread in _free_spill_threads():
        thread.join(timeout=10)
    assert not [d for d in _open_descriptors() if str(tmp_path) in d], "every descriptor closed: the blocks freed"


def test_a_damaged_file_among_consumed_ones_is_named_and_nothing_is_unlinked(tmp_path: Path) -> None:
    good, bad = tmp_path / "range-00000.runs", tmp_path / "range-00001.runs"
    rr.write_runs({"cell": np.arange(3, dtype=np.int32)}, np.array([0, 3]), good)
    bad.write_bytes(b"PAR1" + b"\0" * 40)
    with (
        pytest.raises(StoreError, match=r"range-00001\.runs: not a cellfeatures runs file"),
        rr.consume_runs([good, bad]),
    ):
        pass
    assert good.exists() and bad.exists(), "left for the build's scratch cleanup, which names nothing twice"


def test_a_file_whose_direct_read_is_refused_is_read_buffered_from_then_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that takes O_DIRECT at open and refuses the transfer (EINVAL): the file's handle
    remembers that its descriptor is buffered now, so later reads skip the staging buffer."""
    from cellfeatures._util import direct_io

    if not direct_io.O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    written = records(3_000, positions=False)
    rr.write_runs(written.columns(), written.offsets, tmp_path / "range.runs")
    real = os.preadv

    def refusing(fd: int, *args: object) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & direct_io.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "preadv", refusing)
    handle = rr.RawFile(tmp_path / "range.runs")
    if not handle.direct:
        handle.close()
        pytest.skip("this file system refuses O_DIRECT at open")
    with rr.open_runs([lambda: handle], names=["range.runs"]) as readers:
        assert not handle.direct, "the header's read was refused once: buffered from then on"
        batch = rr.read_batch(readers, 3, rr.column_buffers(readers))
    assert np.array_equal(batch["partner"], written.batch(3)["partner"])
