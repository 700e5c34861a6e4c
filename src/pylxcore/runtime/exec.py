"""Running a command in a running container: ExecStream (its output as it comes) and ExecResult."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Iterator, NamedTuple

from pylxcore.errors import InvalidState, TimeoutExpired

if TYPE_CHECKING:
    from pylxcore.runtime.liblxc import Handle


class ExecResult(NamedTuple):
    """The result of ``exec`` (and of ``run`` with ``detach=False``)."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> bytes:
        return self.stdout + self.stderr


class ExecStream:
    """Output of an exec as it comes: iterate for ``(stream, bytes)``; afterwards
    ``exit_code`` is set. Never loses the exit code, never hangs past ``timeout``."""

    def __init__(
        self,
        handle: Handle,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        uid: int,
        gid: int,
        stdin: bytes | None,
        timeout: float | None,
    ) -> None:
        self.argv = argv
        self._name = handle.name
        self.exit_code: int | None = None
        self._timeout = timeout
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe()
        try:
            self.pid = handle.attach(
                argv, env=env, cwd=workdir, uid=uid, gid=gid, stdin=in_r, stdout=out_w, stderr=err_w
            )
        except BaseException:
            for fd in (out_r, err_r, in_w):
                os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, in_r):
                os.close(fd)
        self._fds = {out_r: "stdout", err_r: "stderr"}
        if stdin:
            # A thread, so a large input cannot deadlock against unread output.
            def feed() -> None:
                try:
                    os.write(in_w, stdin)
                except OSError:
                    pass
                finally:
                    os.close(in_w)

            import threading  # (deferred: only exec with stdin needs it)

            threading.Thread(target=feed, daemon=True).start()
        else:
            os.close(in_w)
        self._started = time.monotonic()

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        import selectors  # (deferred: only exec needs it)

        sel = selectors.DefaultSelector()
        for fd in self._fds:
            sel.register(fd, selectors.EVENT_READ)
        try:
            while sel.get_map():
                left = None if self._timeout is None else self._timeout - (time.monotonic() - self._started)
                if left is not None and left <= 0:
                    self._kill()
                    raise TimeoutExpired(
                        f"exec {self.argv!r} still running after {self._timeout}s: killed",
                        operation="exec",
                        timeout=self._timeout,
                    )
                for key, _ in sel.select(left):
                    fd = key.fd
                    data = os.read(fd, 65536)
                    if not data:
                        sel.unregister(fd)
                        os.close(fd)
                        continue
                    yield self._fds[fd], data
        finally:
            for left_fd in [k.fd for k in sel.get_map().values()]:
                sel.unregister(left_fd)
                os.close(left_fd)
            sel.close()
        self.wait()

    def _kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()

    def wait(self) -> int:
        """Wait for the command (after the output is read); return its exit code.
        Raises InvalidState when liblxc lost the process because the container
        stopped while attaching (its exit code cannot be known then)."""
        if self.exit_code is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                raise InvalidState(
                    f"exec {self.argv!r} in container {self._name!r}: the container stopped while it started;"
                    " its exit code is unknown",
                    name=self._name,
                    state="stopping",
                    operation="exec in",
                ) from None
            self.exit_code = os.waitstatus_to_exitcode(status)
            if self.exit_code < 0:
                self.exit_code = 128 - self.exit_code
        return self.exit_code
