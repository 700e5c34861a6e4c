"""A container's log as its readers see it: LogEntry, reading across rotations, tail, timestamps, follow.

The record format and the rotation are the supervisor's, which writes the
log (see pylxcore.supervisor.logfile): this module only reads it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import attrs

from pylxcore.errors import TimeoutExpired
from pylxcore.supervisor.logfile import RECORD, STDOUT


@attrs.frozen
class LogEntry:
    """One chunk of output as the container wrote it."""

    time: float
    stream: str  # "stdout" | "stderr"
    data: bytes


def parse_records(data: bytes) -> tuple[list[LogEntry], int]:
    """The whole records at the start of ``data``, and how many bytes they take."""
    entries = []
    pos = 0
    size = RECORD.size
    while pos + size <= len(data):
        ts, stream, length = RECORD.unpack_from(data, pos)
        if pos + size + length > len(data):
            break  # a record still being written
        entries.append(
            LogEntry(
                ts, "stdout" if stream == STDOUT else "stderr", data[pos + size : pos + size + length]
            )
        )
        pos += size + length
    return entries, pos


class LogCursor:
    """Reads a container's log in order across its rotations, each record once.

    The supervisor rotates by renames (``log`` becomes ``log.1``, which becomes
    ``log.2``, …; see pylxcore.supervisor.logfile), holding a flock on the container's dir. The
    cursor looks at the names under that lock (shared), so it sees a rotation
    whole or not at all; and it keeps the file it reads open: a name passes
    from file to file, an open file stays the same. Once that file is no
    longer the newest it is drained and the cursor goes on with the one
    written after it, found by its inode. A reader left more than
    ``log_max_files`` rotations behind goes on with the oldest file left (the
    rest was rotated away, as with Docker). Close it after use."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._fd: int | None = None
        self._ino = 0
        self._rest = b""  # the start of a record still being written

    @staticmethod
    def _files(dir_fd: int) -> list[tuple[str, int]]:
        """(name, inode) of each log file in the dir ``dir_fd``, oldest first."""
        names = [n for n in os.listdir(dir_fd) if n == "log" or (n[:4] == "log." and n[4:].isdigit())]
        names.sort(key=lambda n: int(n[4:]) if n != "log" else 0, reverse=True)
        return [(n, os.stat(n, dir_fd=dir_fd).st_ino) for n in names]

    def _next(self) -> tuple[int, int, bool] | None:
        """Open the file that follows the one being read (the oldest when none
        is): (fd, inode, whether it is the newest); None while there is none
        (ours is the newest, or the container has been removed)."""
        import fcntl  # (deferred: only logs need it)

        try:
            dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_SH)
            files = self._files(dir_fd)
            inos = [ino for _, ino in files]
            if self._fd is not None and self._ino in inos:
                following = inos.index(self._ino) + 1
                target = files[following] if following < len(files) else None
            else:
                target = files[0] if files else None
            if target is None:
                return None
            fd = os.open(target[0], os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            return fd, target[1], target == files[-1]
        except FileNotFoundError:
            return None  # removed meanwhile (the supervisor renames only under the lock)
        finally:
            os.close(dir_fd)  # (which unlocks)

    def read(self) -> list[LogEntry]:
        """The records written since the last read (all of them, the first time)."""
        entries: list[LogEntry] = []
        newest = False  # whether our file was the newest when the names were last looked at
        if self._fd is None:
            first = self._next()
            if first is None:
                return entries
            self._fd, self._ino, newest = first
        while True:
            # Looked for before the file is drained: a file that has been
            # rotated already gets no more writes, so draining it after reads
            # all. (One that was the newest then is read to its end now, and
            # whatever follows it at the next read.)
            following = None if newest else self._next()
            chunks = [self._rest]
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
            new, used = parse_records(data)
            entries += new
            self._rest = data[used:]
            if following is None:
                return entries
            os.close(self._fd)
            (self._fd, self._ino, newest), self._rest = following, b""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def last_lines(entries: list[LogEntry], tail: int | None) -> list[LogEntry]:
    """The last ``tail`` lines of ``entries`` (all of them for None), cut
    inside an entry where it holds more lines than are left to keep."""
    if tail is None:
        return entries
    if tail <= 0:
        return []
    # Count lines from the end; a chunk may hold several.
    out: list[LogEntry] = []
    lines = 0
    for e in reversed(entries):
        n = e.data.count(b"\n") or 1
        if lines + n > tail:
            keep = tail - lines
            if keep > 0:
                parts = e.data.splitlines(keepends=True)
                out.append(LogEntry(e.time, e.stream, b"".join(parts[-keep:])))
            break
        out.append(e)
        lines += n
    return list(reversed(out))


def render(entries: list[LogEntry], timestamps: bool) -> list[bytes]:
    """The bytes of ``entries``; with ``timestamps``, each line prefixed with
    its entry's time in RFC 3339 UTC with microseconds (as ``docker logs -t``)."""
    if not timestamps:
        return [e.data for e in entries]
    out = []
    for e in entries:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e.time)) + f".{int(e.time % 1 * 1e6):06d}Z "
        out += [stamp.encode() + line for line in e.data.splitlines(keepends=True)]
    return out


def read_log(directory: Path, *, since: float | None = None) -> list[LogEntry]:
    """Every entry the log in container dir ``directory`` keeps (across
    rotations, oldest first); with ``since``, those written at or after it."""
    cursor = LogCursor(directory)
    try:
        entries = cursor.read()
    finally:
        cursor.close()
    if since is not None:
        entries = [e for e in entries if e.time >= since]
    return entries


def follow_log(
    directory: Path,
    streams: set[str],
    tail: int | None,
    since: float | None,
    timestamps: bool,
    timeout: float | None,
    *,
    running: Callable[[], bool],
    name: str,
) -> Iterator[bytes]:
    """The log of container ``name`` (dir ``directory``) as it is written:
    what it holds first, then each new chunk, until ``running()`` says it has
    ended. Raises TimeoutExpired after ``timeout`` seconds of a running
    container."""
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor = LogCursor(directory)
    try:
        entries = [e for e in cursor.read() if e.stream in streams and (since is None or e.time >= since)]
        yield from render(last_lines(entries, tail), timestamps)
        delay = 0.005
        while True:
            alive = running()
            new = cursor.read()
            if new:
                delay = 0.005
                yield from render([e for e in new if e.stream in streams], timestamps)
                continue
            if not alive:
                # One last read: the supervisor writes the last records before its state.
                yield from render([e for e in cursor.read() if e.stream in streams], timestamps)
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutExpired(
                    f"following the logs of {name!r}: still running after {timeout}s",
                    operation="logs",
                    timeout=timeout,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    finally:
        cursor.close()
