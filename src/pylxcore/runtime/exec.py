"""Running a command in a running container: ExecStream (its output as it
comes, its input, its terminal), ExecResult, and container_pty (a terminal
of the container's own)."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Iterator, NamedTuple

from pylxcore.errors import InvalidState, TimeoutExpired

if TYPE_CHECKING:
    from pylxcore.runtime.liblxc import Handle


_TIOCSPTLCK = 0x40045431  # (termios does not have these two)
_TIOCGPTPEER = 0x5441
_PTMX = (5, 2)  # /dev/ptmx's device numbers


def container_pty(root: str) -> tuple[int, int]:
    """A new pseudo-terminal of the container's own devpts, whose root the
    host sees at ``root`` (``/proc/INIT/root``): (its master, its peer), so
    the command's terminal is a /dev/pts/N in the container. Each part of
    the path is opened without following symlinks and the end must be a
    ptmx device: the container's root owns those dirs (SPEC.md section 7).
    Raises OSError."""
    import fcntl  # (only a terminal needs these)
    import stat
    import struct
    import termios

    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in ("dev", "pts"):
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        flags = os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        master = os.open("ptmx", flags, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        st = os.fstat(master)
        if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != _PTMX:
            raise OSError(f"{root}/dev/pts/ptmx is not a pty multiplexer")
        os.set_blocking(master, True)
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # until resize()
        peer = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, peer


class ExecResult(NamedTuple):
    """The result of ``exec`` (and of ``run`` with ``detach=False``)."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> bytes:
        return self.stdout + self.stderr


class _Reaper:
    """Waits for an exec's process in a thread of its own from the moment it
    starts. The process is the caller's child (liblxc attaches with
    CLONE_PARENT): one nobody waits for stays a zombie in the container's pid
    namespace, and a pid namespace lives on until all its processes are
    reaped, so the container could not stop (its init would wait for it).
    Holds no reference to its ExecStream, which may then be dropped."""

    __slots__ = ("done", "exit_code", "pid")

    def __init__(self, pid: int) -> None:
        import threading  # (deferred: only exec needs it)

        self.pid = pid
        self.exit_code: int | None = None  # None once done: liblxc lost the process
        self.done = threading.Event()
        threading.Thread(target=self._wait, name=f"pylxcore-exec-reaper-{pid}", daemon=True).start()

    def _wait(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # (reaped elsewhere: the container stopped while it was attaching)
        else:
            code = os.waitstatus_to_exitcode(status)
            self.exit_code = 128 - code if code < 0 else code
        self.done.set()


def _feed(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd`` (the feeder's own: nothing else closes it),
    then close it. Raises nothing: a command that does not read all its
    input ends the feeding (EPIPE)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        os.close(fd)


class ExecStream:
    """Output of an exec as it comes: iterate for ``(stream, bytes)``; afterwards
    ``exit_code`` is set. Never loses the exit code, never hangs past ``timeout``.

    ``stdin``: bytes fed to the command (then end of input), or True to keep
    its input open for ``write()`` until ``close_stdin()``. With a terminal
    (``tty``: a pty of the container's, see container_pty), the command's
    stdin, stdout and stderr are that terminal: all its output comes as
    "stdout", ``write()`` types into it, ``resize()`` sets its size.

    ``close()`` (also at the end of a ``with`` block, and when the stream is
    dropped) ends it: our ends of the command's input, output and terminal
    close, and a command still running is killed (SIGKILL; ``wait()`` then
    gives 137), since nothing could read what it says any more (an exec'd
    process ignores SIGPIPE, as its caller, Python, does, so a closed pipe
    alone would not end one that keeps writing). Its process is reaped in
    the background whatever the caller does, so no zombie of it keeps the
    container from stopping."""

    def __init__(
        self,
        handle: Handle,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        uid: int,
        gid: int,
        stdin: bytes | bool | None,
        timeout: float | None,
        tty: tuple[int, int] | None = None,
    ) -> None:
        self.argv = argv
        self._name = handle.name
        self.exit_code: int | None = None
        self._timeout = timeout
        self._tty = tty[0] if tty is not None else None
        self._open: set[int] = set()  # our ends still open (output, terminal)
        self._input: int | None = None
        self._pidfd: int | None = None
        self._iterating = False  # (an iteration has started and not ended)
        if tty is not None:
            master, slave = tty
            try:
                self.pid = handle.attach(
                    argv, env=env, cwd=workdir, uid=uid, gid=gid, stdin=slave, stdout=slave, stderr=slave,
                    tty=True,
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self._fds = {master: "stdout"}
            self._input = master
        else:
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
            self._input = in_w
        self._open.update(self._fds)
        # Before the reaper starts: a pidfd stays good after the reaping, so
        # the terminal's end and a kill never name a pid used again since.
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            pass  # (liblxc lost it: see wait)
        self._reaper = _Reaper(self.pid)
        if isinstance(stdin, bytes) and stdin:
            # A thread, so a large input cannot deadlock against unread output;
            # on a descriptor of its own (without a terminal, the only one: its
            # end is the end of input), which nothing else closes under it.
            import threading  # (deferred: only exec with stdin needs it)

            if self._tty is None:
                fd, self._input = self._input, None
            else:
                fd = os.dup(self._tty)
            assert fd is not None
            threading.Thread(target=_feed, args=(fd, stdin), daemon=True).start()
        elif stdin is not True and self._tty is None:
            self.close_stdin()
        self._started = time.monotonic()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the command's input (typed into its terminal, with
        ``tty``). Raises InvalidState when its input is closed, OSError."""
        fd = self._input
        if fd is None:
            raise InvalidState(
                f"exec {self.argv!r}: its input is closed",
                name=self._name,
                state="closed",
                operation="write to",
            )
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def close_stdin(self) -> None:
        """End the command's input: close it (with ``tty``, type Ctrl-D). Raises nothing."""
        if self._tty is not None:
            try:
                os.write(self._tty, b"\x04")
            except OSError:
                pass
        elif self._input is not None:
            fd, self._input = self._input, None
            os.close(fd)

    def close(self) -> None:
        """End the exec (see the class's docstring): kill the command if it
        still runs and close our ends of its input, output and terminal,
        without waiting. While another thread iterates the stream, that
        iteration (soon at its end) closes them instead. Idempotent;
        ``wait()`` still gives its exit code. Raises nothing."""
        if self._pidfd is not None and not self._reaper.done.is_set():
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass  # (it has just ended)
        if self._iterating:
            return  # (closed under a select, its fds would leave it waiting forever)
        if self._tty is None:
            self.close_stdin()
        self._tty = self._input = None
        for fd in list(self._open):
            self._close_fd(fd)
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            os.close(fd)

    def __enter__(self) -> ExecStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (at interpreter exit, os may be gone: nothing to say it to)
            pass

    def _close_fd(self, fd: int) -> None:
        """Close ``fd`` if it is still one of ours (once only: its number may be reused)."""
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def resize(self, rows: int, cols: int) -> None:
        """Set the terminal's size (the command gets SIGWINCH); nothing without ``tty``. Raises OSError."""
        if self._tty is not None:
            import fcntl  # (only a terminal needs these)
            import struct
            import termios

            fcntl.ioctl(self._tty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            return b""
        except OSError:  # EIO: a terminal whose every other end has closed
            return b""

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        import selectors  # (deferred: only exec needs it)

        sel = selectors.DefaultSelector()
        for fd in self._fds:
            if fd in self._open:
                sel.register(fd, selectors.EVENT_READ)
        # A terminal's output ends when the command has exited, even if a
        # process it left in the background still holds the terminal.
        pidfd = self._pidfd if self._tty is not None else None
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ)
        self._iterating = True
        try:
            while any(fd != pidfd for fd in sel.get_map()):
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
                    if fd == pidfd:
                        sel.unregister(pidfd)
                        if self._tty is not None and self._tty in sel.get_map():
                            os.set_blocking(self._tty, False)
                            while data := self._read(self._tty):
                                yield "stdout", data
                            sel.unregister(self._tty)
                        continue
                    if fd not in sel.get_map():
                        continue  # (the terminal, read to its end just above)
                    data = self._read(fd)
                    if not data:
                        sel.unregister(fd)
                        if fd != self._tty:
                            self._close_fd(fd)
                        continue
                    yield self._fds[fd], data
        finally:
            for left_fd in [k.fd for k in sel.get_map().values()]:
                sel.unregister(left_fd)
                if left_fd not in (self._tty, pidfd):
                    self._close_fd(left_fd)
            sel.close()
            if self._tty is not None:
                self._close_fd(self._tty)
                self._tty = self._input = None
            self._iterating = False
        self.wait()

    def _kill(self) -> None:
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait()

    def wait(self) -> int:
        """Wait for the command (after the output is read); return its exit code.
        Raises InvalidState when liblxc lost the process because the container
        stopped while attaching (its exit code cannot be known then)."""
        if self.exit_code is None:
            self._reaper.done.wait()
            if self._reaper.exit_code is None:
                raise InvalidState(
                    f"exec {self.argv!r} in container {self._name!r}: the container stopped while it started;"
                    " its exit code is unknown",
                    name=self._name,
                    state="stopping",
                    operation="exec in",
                )
            self.exit_code = self._reaper.exit_code
        return self.exit_code
