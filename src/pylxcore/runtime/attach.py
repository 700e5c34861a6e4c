"""Attaching to a container's main process (``docker attach``, SPEC.md
section 10): the library's end of the attach socket that the supervisor of
a container created with ``tty`` or ``stdin`` holds (the protocol is
pylxcore.supervisor.attachsock's).

An AttachStream is to the main process what an ExecStream is to an exec's
command: its output as it comes, its input, its terminal's size. Leaving it
(``detach()``, or the end of a ``with``) leaves the container running;
attach again as often as wanted, several at once.
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import TYPE_CHECKING, Iterator

from pylxcore.errors import InvalidState
from pylxcore.runtime.state import ContainerState
from pylxcore.supervisor.attachsock import CHUNK, END, ERR, EXIT, IN, OUT, RESIZE, socket_path

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


class AttachStream:
    """The main process of a running container, through its supervisor.

    Iterate for ``(stream, bytes)`` as they come ("stdout"; "stderr" too
    without a terminal) until the run ends, then read ``exit_code``; or
    ``read()`` what comes next. ``write()`` sends input (typed into its
    terminal, with ``tty``), ``close_stdin()`` ends it, ``resize()`` sets its
    terminal's size. ``detach()`` (or leaving a ``with``) lets go and leaves
    it running; ``exit_code`` stays None then, as it does when the
    connection to the supervisor was lost."""

    def __init__(self, name: str, ctrdir: str, *, tty: bool) -> None:
        self.name = name
        self.tty = tty
        self.exit_code: int | None = None
        self.ended = False  # the run's end came, or we left, or the supervisor went
        dir_fd = os.open(ctrdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            self._sock.connect(socket_path(dir_fd))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise InvalidState(
                f"cannot attach to container {name!r}: it is not running",
                name=name,
                state="exited",
                operation="attach to",
            ) from None
        finally:
            os.close(dir_fd)

    def fileno(self) -> int:
        """The connection's descriptor: readable when ``read()`` has something. Raises nothing."""
        return self._sock.fileno()

    def _send(self, message: bytes) -> None:
        if self.ended:
            raise InvalidState(
                f"container {self.name!r}: the attached run has ended, or we left it",
                name=self.name,
                state="detached",
                operation="write to",
            )
        try:
            self._sock.sendall(message)
        except OSError as err:  # the supervisor has gone (the run ended meanwhile)
            raise InvalidState(
                f"container {self.name!r}: its supervisor hung up ({err.strerror})",
                name=self.name,
                state="exited",
                operation="write to",
            ) from None

    def write(self, data: bytes) -> None:
        """Send ``data`` to the main process's input. Raises InvalidState
        when the run has ended (or we detached)."""
        for i in range(0, len(data), CHUNK):
            self._send(IN + data[i : i + CHUNK])

    def close_stdin(self) -> None:
        """End the main process's input (on a terminal: Ctrl-D). Raises InvalidState like write()."""
        self._send(END)

    def resize(self, rows: int, cols: int) -> None:
        """Set its terminal's size (it gets SIGWINCH); nothing without ``tty``.
        Raises InvalidState like write()."""
        if self.tty:
            self._send(RESIZE + f"{int(rows)} {int(cols)}".encode())

    def next_chunk(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """The next output as ``(stream, bytes)``, waiting up to ``timeout``
        seconds (None: until it comes); None when nothing came in time,
        ``("", b"")`` at the end. Raises nothing."""
        while not self.ended:
            if timeout is not None and not select.select([self._sock], [], [], timeout)[0]:
                return None
            try:
                message = self._sock.recv(CHUNK + 1)
            except OSError:
                message = b""
            kind, data = message[:1], message[1:]
            if kind == OUT:
                return "stdout", data
            if kind == ERR:
                return "stderr", data
            if kind == EXIT:
                self.exit_code = int(data)
            if kind == EXIT or not message:
                self.detach()
        return "", b""

    def read(self, timeout: float | None = None) -> bytes:
        """What comes next from the main process (both streams; waiting up to
        ``timeout`` seconds, None: until something comes); b"" at its end
        or when nothing came in time. Raises nothing."""
        got = self.next_chunk(timeout)
        return got[1] if got else b""

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        """What comes until ``marker`` has come (or ``timeout`` seconds pass,
        or the run ends): all of it, ``marker`` included. Raises nothing."""
        out = b""
        end = time.monotonic() + timeout
        while marker not in out and not self.ended:
            left = end - time.monotonic()
            if left <= 0:
                break
            out += self.read(left)
        return out

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while (got := self.next_chunk(None)) is not None and got[0]:
            yield got

    def wait(self) -> int | None:
        """Read to the run's end (discarding the output); its exit code, None
        when we detached or the supervisor went without telling. Raises nothing."""
        for _ in self:
            pass
        return self.exit_code

    def detach(self) -> None:
        """Let go of the main process, leaving it running (a thread waiting
        in ``read()`` or the iteration wakes and ends). Raises nothing."""
        self.ended = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # (closed already)
        self._sock.close()

    close = detach

    def __enter__(self) -> AttachStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def let_go(ctrdir: str) -> None:
    """Tell the supervisor of the container at ``ctrdir``, whose last run
    has ended, that no caller is coming for it: it waits a while for a late
    one (pylxcore.supervisor.attachsock.Attachments.end_run), and coming
    and going at once ends that wait. Raises nothing (no socket: no wait)."""
    try:
        AttachStream("", ctrdir, tty=False).detach()
    except (InvalidState, OSError):
        pass


def attach(container: Container) -> AttachStream:
    """Attach to ``container``'s running main process (see AttachStream).
    Raises InvalidState when it is not running, or was created without
    ``tty`` and ``stdin`` (its output is in ``logs(follow=True)`` then)."""
    meta = container._meta()
    tty = bool(meta.extra.get("tty"))
    if not meta.attachable:
        raise InvalidState(
            f"cannot attach to container {container.name!r}: it was created without tty or stdin"
            " (follow its output with logs(follow=True))",
            name=container.name,
            state=container.status(),
            operation="attach to",
        )
    # No state check first: the socket is there exactly while its supervisor
    # is, which keeps a short last run's end for its starter (see
    # pylxcore.supervisor.attachsock.Attachments.end_run).
    try:
        return AttachStream(container.name, str(container.dir), tty=tty)
    except InvalidState:
        container._expect("attach to", ContainerState.RUNNING, ContainerState.FROZEN)
        raise
