"""A container's log as its supervisor writes it: the record format and the
writer, with its rotation and the disk space it holds back.

Format: records of ``RECORD`` (``struct "<dBI"``: unix time, stream
``STDOUT`` 1 or ``STDERR`` 2, length) followed by that many bytes. One
``write`` per record on an O_APPEND file, so a reader sees whole records or a
short tail it retries. pylxcore.runtime.logs reads them with this RECORD.

Rotation, like Docker's json-file driver: past its size cap, ``log`` becomes
``log.1`` (``log.1`` becomes ``log.2``, …; the oldest beyond the number of
files goes) and a fresh ``log`` starts. Only renames: a reader that holds a
file open reads it to its end undisturbed, and a record never spans two files.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time

RECORD = struct.Struct("<dBI")
STDOUT, STDERR = 1, 2


class LogWriter:
    """The container's log, written so that a full disk costs output, never the
    supervisor: a crashed supervisor would lose the exit code (and the pipes'
    reader). Some space is held back in a ``reserve`` file from the start and
    given up on the first ENOSPC, so the last lines and state.json still fit.

    It rotates past ``max_size`` bytes (-1: never), keeping ``max_files``
    files (see the module docstring). Mode 0600: the output of a container is
    as private as its env. Raises OSError when the log cannot be opened."""

    RESERVE = 256 * 1024

    def __init__(self, ctrdir: str, max_size: int = -1, max_files: int = 1) -> None:
        self.path = os.path.join(ctrdir, "log")
        self.max_size = max_size
        self.max_files = max_files
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(self.fd, 0o600)  # a log from before 0600 was the rule
        self.size = os.fstat(self.fd).st_size
        self.reserve = os.path.join(ctrdir, "reserve")
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.RESERVE)
            finally:
                os.close(fd)
        except OSError:
            pass  # no room even for that: we do without

    def release(self) -> bool:
        """Give the reserved space back to the filesystem; False if already
        done. Raises OSError when the reserve cannot be removed."""
        try:
            os.unlink(self.reserve)
        except FileNotFoundError:
            return False
        return True

    def rotate(self) -> None:
        """``log`` -> ``log.1`` -> ``log.2`` …, the oldest beyond ``max_files``
        replaced, then a fresh ``log``. Under an exclusive flock on the
        container's dir, which readers take shared to look at the names (see
        pylxcore.runtime.logs.LogCursor); never waiting for it: while a reader
        holds it, the rotation waits for the next record. The fresh file is
        made first: when not even that fits, the log grows past its cap rather
        than lose output. Raises nothing."""
        try:
            lock = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        fd = -1
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fresh = self.path + ".new"
            fd = os.open(fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            for i in range(self.max_files - 1, 0, -1):
                try:
                    os.rename(f"{self.path}.{i - 1}" if i > 1 else self.path, f"{self.path}.{i}")
                except FileNotFoundError:
                    pass  # not there yet
            os.rename(fresh, self.path)  # with max_files == 1, this replaces the full one
        except OSError:  # locked by a reader, or no room for a file
            if fd >= 0:
                os.close(fd)
            return
        finally:
            os.close(lock)  # (which unlocks)
        os.close(self.fd)
        self.fd, self.size = fd, 0

    def write(self, stream: int, data: bytes) -> None:
        """Append one record of ``data`` from ``stream`` (STDOUT or STDERR),
        stamped now. Raises nothing: output that does not fit is lost."""
        record = RECORD.pack(time.time(), stream, len(data)) + data
        # Before the write: a record goes whole into one file, and a file
        # passes its cap only when one record alone is bigger.
        if self.max_size > 0 and self.size and self.size + len(record) > self.max_size:
            self.rotate()
        for _ in range(2):
            try:
                if os.write(self.fd, record) == len(record):
                    self.size += len(record)
                    return
            except OSError:
                pass
            # A short or failed write: drop the partial record (readers would
            # stop at it for good), free the reserve and try once more.
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            if not self.release():
                return

    def close(self) -> None:
        """Close the current file. Raises OSError."""
        os.close(self.fd)
