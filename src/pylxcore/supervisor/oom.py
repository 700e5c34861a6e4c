"""Whether the kernel OOM-killed a process of the container: its memory
cgroup's OOM kill counter, watched while the cgroup lives."""

from __future__ import annotations

import os
import select


class OomWatch:
    """Counts OOM kills in the container's memory cgroup while it lives.

    ``path`` is the counter file (cgroup v1: ``memory.oom_control``; v2:
    ``memory.events``), or "" to watch nothing. v1: an eventfd registered on
    memory.oom_control fires at every OOM (and when the cgroup goes away); v2:
    memory.events raises POLLPRI on every change. Either way the counter is
    read while the cgroup still exists: liblxc removes it the moment the
    container ends, so reading it at the end (or from a stop hook, which costs
    two shells on every stop) is too late or too slow. A cgroup that cannot
    be watched is not: ``killed`` then stays False. Raises nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.killed = False
        # An OOM event arrives as the OOM starts; the kill is counted a moment
        # later. Until then the supervisor polls the counter every few ms.
        self.pending = False
        self.fd: int | None = None
        self._file: int | None = None
        if not path:
            return
        try:
            self._file = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if path.endswith("memory.oom_control"):
                self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                control = os.path.join(os.path.dirname(path), "cgroup.event_control")
                cfd = os.open(control, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(cfd, f"{self.fd} {self._file}".encode())
                finally:
                    os.close(cfd)
            else:
                self.fd = self._file
        except OSError:
            self.close()
            return
        self.check()  # an OOM before we started watching

    @property
    def events(self) -> int:
        """The poll events that ``fd`` signals an OOM with. Raises nothing."""
        return select.POLLIN if self.fd != self._file else select.POLLPRI

    def check(self, event: bool = False) -> bool:
        """Read the counter (after an ``event`` on our fd, consume it first);
        False once the cgroup is gone: stop watching. The cgroup's removal also
        fires the eventfd, so only an event while it exists means an OOM.
        Raises nothing."""
        if event and self.fd is not None and self.fd != self._file:
            try:
                os.eventfd_read(self.fd)
            except OSError:
                pass
        try:
            data = os.pread(self._file, 4096, 0) if self._file is not None else b""
        except OSError:
            return False
        if not data:
            return False
        if event:
            self.pending = True
        for line in data.split(b"\n"):
            words = line.split()
            if len(words) == 2 and words[0] == b"oom_kill" and int(words[1]) > 0:
                self.killed = True
        if self.killed:
            self.pending = False
        return True

    def close(self) -> None:
        """Stop watching: close the descriptors. Raises OSError."""
        for fd in {self.fd, self._file}:
            if fd is not None:
                os.close(fd)
        self.fd = self._file = None
