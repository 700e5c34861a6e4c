"""gzip on every core: one standard gzip member, its deflate stream compressed in parallel chunks.

Python's gzip module compresses on one core. This writer does what ``pigz``
does: the input is cut in fixed chunks, each compressed as raw deflate by a
thread of its own (zlib releases the GIL), primed with the 32 KiB before it
as its dictionary so that matches still reach back across chunk ends; every
chunk but the last ends with a sync flush (an empty stored block), so the
chunks join into one deflate stream. The CRC-32 and length are computed as
the data passes. The result is one ordinary gzip member any reader takes,
and, the chunks being fixed, the same input always gives the same bytes.
Memory is bounded: at most two chunks per core are in flight.

A chunk that does not compress (random data, files already compressed) is
told by deflating two samples of it, and then written as stored blocks:
deflate would spend as long on it as on text and save nothing. The choice
depends on the chunk's bytes only, so it too is reproducible.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

CHUNK = 1 << 20  # bytes of input per parallel deflate job
# gzip -1: on a root filesystem about 10 % larger than -6 and nearly three times faster.
LEVEL = 1
_WINDOW = 32 << 10  # deflate's window: the dictionary each chunk is primed with
# gzip header: magic, deflate, no flags, mtime 0 (reproducible), no extra flags, OS "unknown".
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_SAMPLE = 32 << 10  # bytes of each of the two samples that judge a chunk
_INCOMPRESSIBLE = 0.97  # a sample deflated to more than this fraction of its size saves nothing


def _compresses(data: bytes) -> bool:
    """Whether deflate gains anything on ``data``: its first and middle samples, at level 1."""
    if len(data) < 4 * _SAMPLE:
        return True
    middle = len(data) // 2
    for sample in (data[:_SAMPLE], data[middle : middle + _SAMPLE]):
        if len(zlib.compress(sample, 1)) < _INCOMPRESSIBLE * _SAMPLE:
            return True
    return False


class Sink(Protocol):
    """Where compressed bytes go: a file, a pipe, a hashing writer."""

    def write(self, data: bytes, /) -> object: ...


def _deflate(data: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    if level and not _compresses(data):
        level = 0  # stored blocks: as fast as a copy
    compressor = (
        zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
        if dictionary
        else zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9)
    )
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzipWriter:
    """A write-only file object: what is written to it goes gzip-compressed to ``out``.

    ``close()`` writes the end (it does not close ``out``). ``threads``
    defaults to the number of cores. Raises what writing to ``out`` raises.
    """

    def __init__(self, out: Sink, *, level: int = LEVEL, threads: int | None = None) -> None:
        self._out = out
        self._level = level
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=self._threads)
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._held: bytes | None = None  # the last full chunk: final or not, the next write says
        self._tail = b""  # the 32 KiB before the held chunk
        self._crc = 0
        self._size = 0
        self._closed = False
        out.write(_HEADER)

    def write(self, data: bytes) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            chunk = bytes(self._buffer[:CHUNK])
            del self._buffer[:CHUNK]
            self._hold(chunk)
        return len(data)

    def flush(self) -> None:
        """Nothing to do until close: a deflate stream ends only once."""

    def _hold(self, chunk: bytes) -> None:
        """Submit the held chunk (not the last, since ``chunk`` follows it) and hold ``chunk``."""
        if self._held is not None:
            self._submit(self._held, last=False)
        self._held = chunk

    def _submit(self, chunk: bytes, *, last: bool) -> None:
        self._pending.append(self._pool.submit(_deflate, chunk, self._tail, self._level, last))
        self._tail = (self._tail + chunk)[-_WINDOW:]
        while len(self._pending) > 2 * self._threads:
            self._out.write(self._pending.popleft().result())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._buffer:
                self._hold(bytes(self._buffer))
                self._buffer.clear()
            self._submit(self._held if self._held is not None else b"", last=True)
            while self._pending:
                self._out.write(self._pending.popleft().result())
            self._out.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParallelGzipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["CHUNK", "LEVEL", "ParallelGzipWriter"]
