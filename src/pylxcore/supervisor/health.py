"""A container's healthcheck, run by its supervisor with Docker's rules.

The test runs in the container (``lxc-attach``, as the library wrote its
command line in policy.spec) ``interval`` seconds after the container
started, then ``interval`` seconds after each check ended. Exit code 0 is a
pass; anything else, or no end within ``timeout`` (the check is killed), a
failure. The status is "starting" until the first pass ("healthy") or
``retries`` failures in a row ("unhealthy"); failures within
``start_period`` of the start do not count. ``health.json`` keeps the
status, the failing streak and the last LOG_KEEP results (start, end, exit
code, the first OUTPUT_MAX bytes of the output) for inspect.
"""

from __future__ import annotations

import os
import select
import signal
import time

from pylxcore.procs import Child
from pylxcore.supervisor.lxcexec import children
from pylxcore.supervisor.policy import PolicySpec
from pylxcore.supervisor.state import write_state

TYPE_CHECKING = False  # (typing itself would cost a fresh supervisor ~10 ms)
if TYPE_CHECKING:
    from typing import Callable

HEALTH_FILE = "health.json"
LOG_KEEP = 5
OUTPUT_MAX = 4096
_HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process under it (the check inside the
    container is lxc-attach's child: killing lxc-attach alone leaves it)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    for p in reversed(pids):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class HealthCheck:
    """The healthcheck of one run of a container: call ``tick`` when the
    poll returns, ``on_fd`` for its descriptors (``fds``), ``stop`` when the
    run ends. ``on_status`` is told each new status."""

    def __init__(self, ctrdir: str, spec: PolicySpec, on_status: Callable[[str], None]) -> None:
        self.path = os.path.join(ctrdir, HEALTH_FILE)
        self.spec = spec
        self.on_status = on_status
        self.status = "starting"
        self.streak = 0
        self.log: list[dict[str, object]] = []
        self.started = time.monotonic()
        self.next_at = self.started + spec.interval
        self.proc: Child | None = None
        self.pidfd = self.out_fd = -1
        self.output = b""
        self.began = 0.0
        self.deadline = 0.0
        self._save()

    @property
    def fds(self) -> tuple[int, int]:
        return self.pidfd, self.out_fd

    def wait_ms(self) -> int:
        """Milliseconds until ``tick`` has something to do."""
        when = self.deadline if self.proc is not None else self.next_at
        return max(0, int((when - time.monotonic()) * 1000) + 1)

    def tick(self, poller: select.poll) -> None:
        """Start a check when one is due; end one past its timeout."""
        now = time.monotonic()
        if self.proc is None and now >= self.next_at:
            self._begin(poller)
        elif self.proc is not None and now >= self.deadline:
            _kill_tree(self.proc.pid)
            self._end(poller, -1, f"Health check exceeded timeout ({self.spec.timeout:g}s)")

    def on_fd(self, fd: int, poller: select.poll) -> None:
        """Its output came (or ended), or the check exited."""
        if fd == self.out_fd:
            self._read(poller)
        elif fd == self.pidfd and self.proc is not None:
            code = self.proc.wait()
            self._end(poller, code if code >= 0 else 128 - code, None)

    def stop(self, poller: select.poll) -> None:
        """The run ended: kill a check under way, record nothing of it."""
        if self.proc is not None:
            _kill_tree(self.proc.pid)
            self.proc.wait()
            self._close(poller)

    def _begin(self, poller: select.poll) -> None:
        r, w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            env = self.spec.health_env or {"PATH": _HOST_PATH}
            self.proc = Child(self.spec.health_argv, devnull, w, w, env)
            self.pidfd = os.pidfd_open(self.proc.pid)
        except OSError as err:
            os.close(r)
            self.proc = None
            self.began = time.time()
            self._result(1, f"cannot run the healthcheck: {err}")
            self.next_at = time.monotonic() + self.spec.interval
            return
        finally:
            os.close(w)
            os.close(devnull)
        os.set_blocking(r, False)
        self.out_fd, self.output = r, b""
        self.began = time.time()
        self.deadline = time.monotonic() + self.spec.timeout
        poller.register(self.out_fd, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)

    def _read(self, poller: select.poll) -> None:
        try:
            data = os.read(self.out_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            poller.unregister(self.out_fd)
            os.close(self.out_fd)
            self.out_fd = -1
        elif len(self.output) < OUTPUT_MAX:
            self.output += data[: OUTPUT_MAX - len(self.output)]

    def _close(self, poller: select.poll) -> None:
        for fd in (self.out_fd, self.pidfd):
            if fd >= 0:
                poller.unregister(fd)
                os.close(fd)
        self.out_fd = self.pidfd = -1
        self.proc = None

    def _end(self, poller: select.poll, code: int, message: str | None) -> None:
        while self.out_fd >= 0 and message is None:  # what it wrote before it exited
            before = self.out_fd, len(self.output)
            self._read(poller)
            if (self.out_fd, len(self.output)) == before:
                break
        output = message if message is not None else self.output.decode("utf-8", "replace")
        self._close(poller)
        self._result(code, output)
        self.next_at = time.monotonic() + self.spec.interval

    def _result(self, code: int, output: str) -> None:
        """Docker's rules (see the module's docstring) on one check's result."""
        self.log = [*self.log, {"start": self.began, "end": time.time(), "exit_code": code, "output": output}]
        self.log = self.log[-LOG_KEEP:]
        status = self.status
        if code == 0:
            self.streak, status = 0, "healthy"
        elif not (self.status == "starting" and time.monotonic() - self.started < self.spec.start_period):
            self.streak += 1
            if self.streak >= self.spec.retries:
                status = "unhealthy"
        changed = status != self.status
        self.status = status
        self._save()
        if changed:
            self.on_status(status)

    def _save(self) -> None:
        record = {"status": self.status, "failing_streak": self.streak, "log": self.log}
        try:
            write_state(self.path, record, durable=False)
        except OSError:
            pass
