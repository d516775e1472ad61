"""Scratch I/O around the page cache: the bytes on disk and the bytes read back are exactly a buffered
write's and read's, at every size and offset around the alignment; where O_DIRECT is refused, the same
call carries on buffered."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellfeatures._util import direct_io

SIZES = [0, 1, 511, 4095, 4096, 4097, direct_io.STAGING_BYTES - 1, direct_io.STAGING_BYTES + 4097]


def payload(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def write_in_pieces(path: Path, data: np.ndarray, pieces: list[int]) -> bool:
    with direct_io.DirectWriter(path) as out:
        at = 0
        for piece in pieces:
            out.write(memoryview(data[at : at + piece]))
            at += piece
        out.write(data[at:])
        return out.direct


@pytest.mark.parametrize("size", SIZES)
def test_a_written_file_holds_exactly_the_bytes_written(tmp_path: Path, size: int) -> None:
    data = payload(size)
    pieces = [p for p in (3, 5000, 1) if p <= size // 3]  # odd pieces, then the rest in one
    write_in_pieces(tmp_path / "f", data, pieces)
    assert (tmp_path / "f").read_bytes() == data.tobytes()


def test_reads_at_any_offset_and_length_match_the_file(tmp_path: Path) -> None:
    data = payload(direct_io.STAGING_BYTES * 2 + 12_345, seed=1)
    (tmp_path / "f").write_bytes(data.tobytes())
    fd, direct = direct_io.open_direct(tmp_path / "f", os.O_RDONLY)
    try:
        cases = [(0, 0), (0, 1), (1, 4095), (4095, 2), (4096, 4096), (7, direct_io.STAGING_BYTES + 9)]
        cases += [(data.size - 10, 10), (123, data.size - 123)]
        for offset, length in cases:
            target = np.full(length, 7, np.uint8)
            assert direct_io.pread_into(fd, direct, offset, memoryview(target)) == (length, direct)
            assert np.array_equal(target, data[offset : offset + length]), (offset, length)
        past_the_end = np.zeros(100, np.uint8)
        assert direct_io.pread_into(fd, direct, data.size - 30, past_the_end) == (30, direct)
        assert np.array_equal(past_the_end[:30], data[-30:])
    finally:
        os.close(fd)


def test_o_direct_is_used_where_the_file_system_takes_it(tmp_path: Path) -> None:
    fd, direct = direct_io.open_direct(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        if not direct:
            pytest.skip("this file system refuses O_DIRECT (the buffered path is what runs here)")
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & direct_io.O_DIRECT
    finally:
        os.close(fd)
    assert write_in_pieces(tmp_path / "g", payload(10_000), [])


def test_without_o_direct_the_same_calls_run_buffered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct_io, "O_DIRECT", 0)  # as on macOS
    data = payload(50_000)
    assert not write_in_pieces(tmp_path / "f", data, [100])
    assert (tmp_path / "f").read_bytes() == data.tobytes()
    fd, direct = direct_io.open_direct(tmp_path / "f", os.O_RDONLY)
    target = np.empty(1000, np.uint8)
    assert not direct and direct_io.pread_into(fd, direct, 777, target) == (1000, False)
    os.close(fd)
    assert np.array_equal(target, data[777:1777])


def test_a_transfer_refused_after_open_carries_on_buffered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes the flag at open and refuses the first aligned transfer (EINVAL)."""
    refused: list[str] = []

    def refusing(real: Any, name: str) -> Any:
        def call(fd: int, *args: Any) -> Any:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & direct_io.O_DIRECT:
                refused.append(name)
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(fd, *args)

        return call

    monkeypatch.setattr(os, "pwrite", refusing(os.pwrite, "pwrite"))
    monkeypatch.setattr(os, "preadv", refusing(os.preadv, "preadv"))
    data = payload(direct_io.STAGING_BYTES + 100)
    if not direct_io.O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    write_in_pieces(tmp_path / "f", data, [])
    assert (tmp_path / "f").read_bytes() == data.tobytes()
    fd, direct = direct_io.open_direct(tmp_path / "f", os.O_RDONLY)
    target = np.empty(5000, np.uint8)
    assert direct_io.pread_into(fd, direct, 3, target) == (5000, False), "buffered from the refused transfer on"
    os.close(fd)
    assert np.array_equal(target, data[3:5003])
    if direct:  # this file system took the flag at open: both transfers were refused once, then buffered
        assert refused == ["pwrite", "preadv"]
