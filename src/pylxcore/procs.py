"""Host processes, cheaply: a pid's start time (which tells a live process from a
reused pid, and names temporary files by their owner), a child started
without subprocess, and a server forked into the background.

Standard library only, and small: the supervisor imports it (see
pylxcore.supervisor), and so do the store and the runtime. Importing
subprocess would cost ~10 ms, which a supervisor pays at every start.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # (typing itself would cost a fresh supervisor ~10 ms)
if TYPE_CHECKING:
    import socket
    from typing import Callable

_READY = b"ok"  # (a background server's first word to its starter: it listens)


def read_stat(pid: int) -> tuple[bytes, list[bytes]] | None:
    """(command name, fields 3 onwards) of ``/proc/PID/stat``: the first of
    those fields is the state ("R", "S", …, "Z" for a zombie). None when no
    process has that pid. Raises nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split at the last ")".
    end = data.rfind(b")")
    return data[data.find(b"(") + 1 : end], data[end + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (when the process started, in clock ticks
    since boot): with the pid, it names one process for good. None when no
    process runs as ``pid``; a zombie counts as gone (it has ended, only its
    parent has not reaped it yet). Raises nothing."""
    stat = read_stat(pid)
    if stat is None or stat[1][0] in (b"Z", b"X"):
        return None
    return int(stat[1][19])


def owner_tag() -> str:
    """"PID-STARTTIME" of this process: names temporary files and dirs so that
    ``Engine.check()`` can tell the leftovers of a dead process from the work in
    progress of a live one (a pid alone may have been reused)."""
    pid = os.getpid()
    return f"{pid}-{process_start_time(pid)}"


def owner_alive(name: str) -> bool:
    """Whether the process named in a temporary name (see owner_tag) still runs."""
    parts = name.lstrip(".").split("-")
    for i in range(len(parts) - 1):
        if parts[i].isdigit() and parts[i + 1].isdigit():
            return str(process_start_time(int(parts[i]))) == parts[i + 1]
    return False


class Child:
    """A program started with ``posix_spawn`` (its stdin, stdout and stderr
    the given descriptors, or with ``terminal`` that terminal's path, opened
    as its controlling terminal in a session of its own; ``env``, else this
    process's environment), whose exit code is read by ``poll()`` or
    ``wait()``. Raises OSError when it cannot be started."""

    def __init__(
        self,
        argv: list[str],
        stdin: int,
        stdout: int,
        stderr: int,
        env: dict[str, str] | None = None,
        *,
        terminal: str | None = None,
    ) -> None:
        actions: list[tuple[int, int, int] | tuple[int, int, str, int, int]] = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        if terminal is not None:
            # In a session of its own, whose leader opening a terminal takes it
            # as its controlling terminal (glibc makes the session before the
            # file actions): stdin, stdout and stderr are that terminal.
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, terminal, os.O_RDWR, 0),
                (os.POSIX_SPAWN_DUP2, 0, 1),
                (os.POSIX_SPAWN_DUP2, 0, 2),
            ]
        environ = os.environ if env is None else env
        self.pid = os.posix_spawn(argv[0], argv, environ, file_actions=actions, setsid=terminal is not None)
        self.code: int | None = None

    def poll(self) -> int | None:
        """Its exit code (``-N`` when killed by signal N), or None while it
        runs. Raises ChildProcessError when something else reaped it."""
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self) -> int:
        """Wait until it has exited; its exit code (``-N``: killed by signal
        N). Raises ChildProcessError when something else reaped it."""
        if self.code is None:
            _, status = os.waitpid(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
        return self.code


def detach(keep_fd: int) -> None:
    """Leave the caller's session and terminal (for a server or supervisor
    forked into the background): a Ctrl-C or hang-up there must not reach
    it. Nothing inherited stays open but ``keep_fd`` (the pipe its starter
    waits on), and stdin, stdout and stderr are /dev/null. Raises OSError."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 1 << 20)


class CannotServe(Exception):
    """Raised by a background server's ``listen`` (see serve_in_background):
    why it cannot serve, for its starter to print."""


def serve_in_background(
    what: str,
    name: str,
    listen: Callable[[], socket.socket],
    serve: Callable[[socket.socket], object],
) -> int:
    """Fork the server ``what`` (called ``name``) into the background (see
    detach) and wait for its first word. The server calls ``listen()``, then
    ``serve`` with its listener, and ends with os._exit when that returns.
    In the starter: 0 once the server listens, or when another process holds
    its address already (``listen`` raised EADDRINUSE: that one serves);
    else 1, with the reason (CannotServe, another OSError) on stderr. Raises
    OSError when it cannot fork."""
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        os.close(ready_w)
        try:
            word = os.read(ready_r, 4096)
        finally:
            os.close(ready_r)
        if word == _READY:
            return 0
        os.write(2, (word or f"error: the {what} died before it listened".encode()) + b"\n")
        return 1
    try:
        os.close(ready_r)
        detach(ready_w)
        os.chdir("/")
        try:
            listener = listen()
        except CannotServe as err:
            os.write(ready_w, f"error: {err}".encode())
            os._exit(1)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                os.write(ready_w, _READY)  # another server serves this address
                os._exit(0)
            os.write(ready_w, f"error: the {what} cannot listen as {name}: {err}".encode())
            os._exit(1)
        os.write(ready_w, _READY)
        os.close(ready_w)
        serve(listener)
    finally:
        os._exit(0)
