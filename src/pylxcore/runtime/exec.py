"""Running a command in a running container: ExecStream (its output as it
comes, its input, its terminal), ExecResult, and container_pty (a terminal
of the container's own)."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Iterator, NamedTuple

from pylxcore.errors import InvalidState, LXCError, TimeoutExpired

if TYPE_CHECKING:
    import socket

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

    ``close()`` (also at the end of a ``with`` block, when the stream is
    dropped, and when an iteration is left before its end) ends it: our ends
    of the command's input, output and terminal close, and a command still
    running is killed (SIGKILL; ``wait()`` then gives 137), since nothing
    could read what it says any more (one that kept writing would end by
    SIGPIPE, but one that waits would not). The store's attach server
    (pylxcore.runtime.attacher) started it and reaps it whatever the caller
    does, so no zombie of it keeps the container from stopping; its exit
    code comes from the server. Should the server die, the command is killed
    and ``wait()`` (and the iteration) raise LXCError."""

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
        self.pid = 0  # (the command's host pid, once attached)
        self._pidfd: int | None = None
        self._iterating = False  # (an iteration has started and not ended)
        import threading  # (deferred, with the client: only exec needs them)

        from pylxcore.runtime.attach_client import attach

        self._conn: socket.socket | None = None  # (brings the exit code; see wait)
        self._lock = threading.Lock()
        self._server_gone = ""  # why the exit code cannot come, once the server died
        request = {"argv": argv, "env": env, "cwd": workdir, "uid": uid, "gid": gid, "tty": tty is not None}
        if tty is not None:
            master, slave = tty
            try:
                self.pid, self._pidfd, self._conn = attach(handle.lxcpath, handle.name, request, (slave,) * 3)
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
                self.pid, self._pidfd, self._conn = attach(
                    handle.lxcpath, handle.name, request, (in_r, out_w, err_w)
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
        if self._pidfd is None:
            self._receive()  # (liblxc lost it: the server says so at once)
        if isinstance(stdin, bytes) and stdin:
            # A thread, so a large input cannot deadlock against unread output;
            # on a descriptor of its own (without a terminal, the only one: its
            # end is the end of input), which nothing else closes under it.
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
        self._signal_kill()
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
            if self._conn is not None:
                self._conn.close()
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
        # The server's connection: its exit code comes there, or the end of
        # it when the server died (then nothing can say when it ends: stop).
        conn = self._conn.fileno() if self._conn is not None else None
        if conn is not None:
            sel.register(conn, selectors.EVENT_READ)
        self._iterating = True
        ended = False
        try:
            while any(fd not in (pidfd, conn) for fd in sel.get_map()):
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
                    if fd == conn:
                        sel.unregister(conn)
                        self._receive()
                        if self._server_gone:
                            raise LXCError(self._server_gone, operation="exec", container=self._name)
                        continue
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
            ended = True
        finally:
            if not ended:
                # Left before the end (a break, an error): our ends close below,
                # so nothing could read it any more. Killed, as close() does,
                # for a known end (137) rather than whatever a closed pipe does.
                self._signal_kill()
            for left_fd in [k.fd for k in sel.get_map().values()]:
                sel.unregister(left_fd)
                if left_fd not in (self._tty, pidfd, conn):
                    self._close_fd(left_fd)
            sel.close()
            if self._tty is not None:
                self._close_fd(self._tty)
                self._tty = self._input = None
            self._iterating = False
        self.wait()

    def _signal_kill(self) -> None:
        """SIGKILL the command unless its exit code has come. Raises nothing."""
        if self._pidfd is not None and self._conn is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except OSError:
                pass  # (it has just ended; or close() in another thread closed the pidfd)

    def _kill(self) -> None:
        self._signal_kill()
        self.wait()

    def _receive(self) -> None:
        """Take the exit code from the server (blocks until it has reaped the
        process); then the connection closes. Raises nothing: see wait."""
        from pylxcore.runtime.attach_client import receive_exit

        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return  # (taken already)
            gone = f"exec {self.argv!r} in container {self._name!r}:"
            gone += " the attach server died; its exit code is unknown"
            try:
                code = receive_exit(conn, gone)
            except LXCError:
                self._server_gone = gone
                # Nothing would ever reap or report it: end it rather than leave it running unseen.
                if self._pidfd is not None:
                    try:
                        signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                code = None
            finally:
                conn.close()
            if code is not None:
                self.exit_code = code

    def wait(self) -> int:
        """Wait for the command (after the output is read); return its exit code.
        Raises InvalidState when liblxc lost the process because the container
        stopped while attaching (its exit code cannot be known then), LXCError
        when the attach server died meanwhile (the command is killed then)."""
        self._receive()
        if self._server_gone:
            raise LXCError(self._server_gone, operation="exec", container=self._name)
        if self.exit_code is None:
            raise InvalidState(
                f"exec {self.argv!r} in container {self._name!r}: the container stopped while it started;"
                " its exit code is unknown",
                name=self._name,
                state="stopping",
                operation="exec in",
            )
        return self.exit_code
