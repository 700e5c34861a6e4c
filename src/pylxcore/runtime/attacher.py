"""The attach server: one small long-lived process per store root that
attaches the commands of ``exec`` to the store's containers.

liblxc attaches by forking its caller. From the caller itself, each exec
would copy the caller's page tables and pay its copy-on-write faults, in
proportion to the caller's size; this process is small (~8 MB PSS), so an
exec costs the same whoever asks (medians of ``exec(['true'])`` on 2 shared
cores: 10-14 ms from a small caller before and after; from one holding 200
MB, 38-50 ms before, 10-12 ms after; the caller's CPU 5.5 ms before, 1.3 ms
after). The attached process is this server's child, so the server reaps
it and the caller needs no thread to.

pylxcore.runtime.attach_client starts it on demand (``python -I -c`` with
the library's interpreter), named after its store root and this code (so a
changed library never talks to a server that runs older code). It listens
on an abstract SOCK_SEQPACKET socket, serves only its own uid and only
containers of its own store, and exits once idle for the given seconds, after
a given number of attaches (liblxc's attach leaks a descriptor: see
attach_client.MOST) or when asked to (by Engine.close()), each time after the
execs it runs have ended.

The protocol, one connection per exec: the client sends a JSON request
(``container``: its key, ``argv``, ``env``, ``cwd``, ``uid``, ``gid``,
``tty``) with the command's stdin, stdout and stderr (SCM_RIGHTS); the
server answers ``{"pid": N}`` with the process's pidfd, or ``{"error":
…, "operation": …, "detail": …}`` (an LXCError's fields); then, once it has
reaped the process, ``{"exit": CODE}`` (128+N when killed by signal N;
null when liblxc lost the process). A request ``{"quit": true}`` makes it
stop listening and answers ``{"ok": true}``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys

from pylxcore.errors import LXCError
from pylxcore.procs import CannotServe, serve_in_background
from pylxcore.runtime.liblxc import Handle, available

_REQUEST_MAX = 1 << 20  # a request's JSON (the command line and its environment)


def address(name: str) -> bytes:
    """The abstract unix address of the server called ``name`` (see
    pylxcore.supervisor.protocol.zygote_address for why abstract)."""
    return b"\0" + name.encode()


def _send(conn: socket.socket, what: dict[str, object], fd: int | None = None) -> None:
    """Send one answer; a client gone is no matter (no SIGPIPE: it is not ignored here)."""
    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder, signed=True))] if fd else []
    try:
        conn.sendmsg([json.dumps(what).encode()], fds, socket.MSG_NOSIGNAL)
    except OSError:
        pass


def _received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(
                int.from_bytes(data[i : i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4)
            )
    return fds


def _valid_key(key: object) -> bool:
    """A container of this store: a plain entry of its containers dir."""
    if not isinstance(key, str):
        return False
    return bool(key) and "/" not in key and "\0" not in key and not key.startswith(".")


class _Server:
    def __init__(self, listener: socket.socket, lxcpath: str, most: int) -> None:
        self.listener: socket.socket | None = listener
        self.lxcpath = lxcpath
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        self.running = 0  # (execs whose process is not reaped yet)
        self.attached = 0
        self.most = most

    def accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        # Anyone may connect to an abstract address: serve our own uid only.
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        except OSError:
            creds = b""
        if len(creds) != 12 or int.from_bytes(creds[4:8], sys.byteorder) != os.geteuid():
            conn.close()
            return
        self.sel.register(conn, selectors.EVENT_READ, "request")

    def request(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        try:
            data, ancdata, flags, _ = conn.recvmsg(_REQUEST_MAX, socket.CMSG_SPACE(3 * 4))
        except OSError:
            conn.close()
            return
        fds = _received_fds(ancdata)
        try:
            pid = self._attach(conn, data, fds, flags)
        finally:
            for fd in fds:
                os.close(fd)
        if pid is None:
            conn.close()
            return
        self.attached += 1
        if self.attached >= self.most:
            self.stop()
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # (liblxc lost it: the container stopped meanwhile)
            _send(conn, {"pid": pid})
            _send(conn, {"exit": None})
            conn.close()
            return
        _send(conn, {"pid": pid}, pidfd)
        self.running += 1
        self.sel.register(pidfd, selectors.EVENT_READ, (pid, conn))

    def _attach(self, conn: socket.socket, data: bytes, fds: list[int], flags: int) -> int | None:
        """Attach what ``data`` asks for; its pid, or None once answered otherwise."""
        try:
            req = json.loads(data) if not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) else None
        except ValueError:
            req = None
        if isinstance(req, dict) and req.get("quit") is True:
            self.stop()
            _send(conn, {"ok": True})
            return None
        if not isinstance(req, dict) or not _valid_key(req.get("container")) or len(fds) != 3:
            _send(conn, {"error": "a malformed request to the attach server", "operation": "attach to"})
            return None
        try:
            return Handle(req["container"], self.lxcpath).attach(
                [str(a) for a in req["argv"]],
                env={str(k): str(v) for k, v in req["env"].items()},
                cwd=req.get("cwd") or None,
                uid=int(req["uid"]),
                gid=int(req["gid"]),
                stdin=fds[0],
                stdout=fds[1],
                stderr=fds[2],
                tty=bool(req.get("tty")),
            )
        except LXCError as err:
            _send(conn, {"error": str(err), "operation": err.operation, "detail": err.detail})
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            why = f"a malformed request to the attach server: {err!r}"
            _send(conn, {"error": why, "operation": "attach to"})
        return None

    def reap(self, pidfd: int, pid: int, conn: socket.socket) -> None:
        self.sel.unregister(pidfd)
        os.close(pidfd)
        self.running -= 1
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            code = None
        else:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
        _send(conn, {"exit": code})
        conn.close()

    def stop(self) -> None:
        """Stop listening: the next client starts another server."""
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def serve(self, idle: float) -> None:
        while self.sel.get_map():
            busy = len(self.sel.get_map()) > (self.listener is not None)  # (a request or an exec)
            events = self.sel.select(None if busy else idle)
            if not events and not busy:
                # Idle: stop listening. A client queued meanwhile is reset
                # before anything of it was read: it starts another server.
                self.stop()
                continue
            for key, _ in events:
                if key.data == "listen":
                    self.accept()
                elif key.data == "request":
                    assert isinstance(key.fileobj, socket.socket)
                    self.request(key.fileobj)
                else:
                    pid, conn = key.data
                    self.reap(key.fd, pid, conn)


def _listen(name: str) -> socket.socket:
    why = available()  # (the bindings load once, here, not at the first exec)
    if why is not None:
        raise CannotServe(why)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    listener.bind(address(name))
    listener.listen(128)
    return listener


def _serve(listener: socket.socket, lxcpath: str, idle: float, most: int) -> None:
    # What it attaches starts with the signals' defaults, as under `docker
    # exec`: Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays
    # ignored across exec (a `yes | head -1` would end in "Broken pipe").
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    # Its umask too is theirs: Docker's, not that of whichever caller started the server.
    os.umask(0o022)
    _Server(listener, lxcpath, most).serve(idle)


def main(args: list[str]) -> int:
    """``NAME LXCPATH IDLE MOST``: fork into the background and serve the
    containers of ``LXCPATH`` at ``address(NAME)`` until idle for IDLE
    seconds or MOST attaches are done (then stop listening and exit once
    the execs end: the next client starts another); exit 0 once it listens
    (or when another process holds that address already), else 1 with the
    reason on stderr. Raises OSError when it cannot fork (the server itself
    ends with os._exit)."""
    name, lxcpath, idle, most = args[0], args[1], float(args[2]), int(args[3])
    return serve_in_background(
        "attach server", name, lambda: _listen(name), lambda listener: _serve(listener, lxcpath, idle, most)
    )
