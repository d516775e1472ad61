"""Scratch files written and read around the page cache (O_DIRECT), for data that is read once, soon.

Why: the synapse plan spills every record once (5.3 GB at 337M synapses, 17 bytes per record; 7.8 GB
with soma distances) and reads it back once. Through the page cache each spilled page is a new page-cache
page, and on a VM whose free memory was handed back to the host (virtio-balloon free-page reporting, as on
the Firecracker reference machine) the first touch of a new page costs ~5 µs in the host: measured with
dd on that machine, 4 GB written buffered took 21-26 s (20-25 s of it kernel time), 4 GB with O_DIRECT
2.9 s, read back with O_DIRECT 2.6 s. Direct I/O goes through one page-aligned staging buffer per thread,
made once and reused, so no new pages appear however much is spilled.

O_DIRECT wants file offsets, lengths and buffer addresses aligned to the device's block (512 bytes or
4 KiB): files are written in aligned pieces, the tail padded and then cut back with ftruncate, so the
bytes on disk are exactly what a buffered write gives; reads fetch the aligned blocks around the wanted
bytes. Where the flag is missing (macOS, Windows) or the file system refuses it (EINVAL at open or at
the first transfer, as on older tmpfs), the same descriptor carries on buffered: same bytes, old speed.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading
from pathlib import Path

import numpy as np

ALIGN = 4096  # a multiple of every logical block size in use (512 B and 4 KiB sectors)
STAGING_BYTES = 4 << 20  # one transfer; dd on the reference machine: 4 MiB blocks at 1.4-2.4 GB/s
O_DIRECT: int = getattr(os, "O_DIRECT", 0)

_per_thread = threading.local()


def staging() -> np.ndarray:
    """This thread's page-aligned byte buffer for direct transfers (anonymous mmap: page-aligned)."""
    buffer: np.ndarray | None = getattr(_per_thread, "staging", None)
    if buffer is None:
        buffer = np.frombuffer(mmap.mmap(-1, STAGING_BYTES), np.uint8)
        _per_thread.staging = buffer
    return buffer


def open_direct(path: Path, flags: int) -> tuple[int, bool]:
    """`os.open(path, flags | O_DIRECT)`, or without O_DIRECT where it is refused; (fd, direct)."""
    if O_DIRECT:
        try:
            return os.open(path, flags | O_DIRECT, 0o644), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o644), False


def drop_direct(fd: int) -> None:
    """Carry on buffered: the file system accepted O_DIRECT at open but refuses this transfer."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~O_DIRECT)


def _bytes(data: memoryview | np.ndarray) -> np.ndarray:
    return data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)


class DirectWriter:
    """A write-only file filled front to back through the staging buffer; `close` pads the last block and
    cuts the file back to the bytes written. A context manager; on error the file is left for the caller
    to remove (it is scratch under a temporary directory). It holds its thread's staging buffer until
    closed: one writer per thread at a time, and no direct reads on that thread meanwhile."""

    def __init__(self, path: Path) -> None:
        self._fd, self.direct = open_direct(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self._buffer = staging()
        self._filled = 0  # bytes waiting in the staging buffer
        self._flushed = 0  # bytes already in the file

    def write(self, data: memoryview | np.ndarray) -> None:
        source = _bytes(data)
        done = 0
        while done < source.size:
            n = min(source.size - done, self._buffer.size - self._filled)
            self._buffer[self._filled : self._filled + n] = source[done : done + n]  # numpy: GIL released
            self._filled += n
            done += n
            if self._filled == self._buffer.size:
                self._flush(self._filled)

    def _flush(self, length: int) -> None:
        view = self._buffer.data[:length]
        done = 0
        while done < length:
            try:
                done += os.pwrite(self._fd, view[done:], self._flushed + done)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                drop_direct(self._fd)
                self.direct = False
        self._flushed += length
        self._filled = 0

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            size = self._flushed + self._filled
            padded = -self._filled % ALIGN
            self._buffer[self._filled : self._filled + padded] = 0
            self._flush(self._filled + padded)
            if padded:
                os.ftruncate(self._fd, size)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            os.close(self._fd)
            self._fd = -1


def pread_into(fd: int, direct: bool, offset: int, target: memoryview | np.ndarray) -> tuple[int, bool]:
    """Read from `offset` into `target` (bytes); returns how many bytes there were (fewer at the end of the
    file) and whether the descriptor is still direct (False once a refused transfer made it buffered: the
    caller keeps that, so its later reads skip the staging buffer). A direct descriptor reads the aligned
    blocks around the range into the staging buffer."""
    out = _bytes(target)
    if not direct:
        view = out.data
        done = 0
        while done < out.size:
            got = os.preadv(fd, [view[done:]], offset + done)
            if not got:
                break
            done += got
        return done, False
    buffer = staging()
    done = 0
    while done < out.size:
        at = offset + done
        base = at - at % ALIGN
        want = min(buffer.size, -(-(at + out.size - done - base) // ALIGN) * ALIGN)
        try:
            got = os.preadv(fd, [buffer.data[:want]], base)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            drop_direct(fd)
            rest, _ = pread_into(fd, False, at, out[done:])
            return done + rest, False
        n = min(got - (at - base), out.size - done)
        if n <= 0:
            break
        out[done : done + n] = buffer[at - base : at - base + n]
        done += n
    return done, True
