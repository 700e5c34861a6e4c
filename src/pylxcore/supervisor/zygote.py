"""The zygote: one small interpreter per store root that forks the
containers' supervisors.

A fresh interpreter per container costs an interpreter's start-up and ~2.5 MB
that no other process shares; a fork of the caller costs in proportion to
the caller's memory, and is unsafe in a caller that runs threads. The zygote
forks the supervisors instead: they share its pages (copy-on-write), so each
costs ~0.7 MB, and a start skips the interpreter's start-up and imports.

pylxcore.runtime.launch starts it on demand, named after its store root and
the supervisor's code (so a changed library never talks to a zygote that
runs older code). It listens on an abstract unix socket (see
protocol.zygote_address), serves only its own uid and only containers of its
own store, and exits once idle for ZYGOTE_IDLE seconds or when asked to
(QUIT, by Engine.close()). Supervisors never depend on it: it may exit or die
at any time without harm to them.
"""

from __future__ import annotations

import gc
import os
import select
import socket

# Loaded here for the supervisors it forks to share (a supervisor that loads
# it itself, for a container with a terminal or stdin, pays ~0.5 MB of its own).
import pylxcore.supervisor.attachsock  # noqa: F401
from pylxcore.procs import serve_in_background
from pylxcore.supervisor.protocol import QUIT, peer_credentials, zygote_address
from pylxcore.supervisor.supervise import fork_supervisor

ZYGOTE_IDLE = 10.0


def _read_request(conn: socket.socket) -> bytes:
    """The request on ``conn``, without its newline; b"" when none came whole in time."""
    conn.settimeout(2)
    data = b""
    while not data.endswith(b"\n") and len(data) < 8192:
        try:
            chunk = conn.recv(8192)
        except OSError:  # (a timeout is one)
            break
        if not chunk:
            break
        data += chunk
    return data[:-1] if data.endswith(b"\n") else b""


def _serve(conn: socket.socket, containers_dir: str, listener: socket.socket) -> tuple[bool, int | None]:
    """Answer one request on ``conn`` (and close it): (False for the request
    to quit, the pid of the child that relays the supervisor's answer)."""
    with conn:
        try:
            if peer_credentials(conn)[1] != os.geteuid():
                return True, None
            request = _read_request(conn)
            if request == QUIT:
                return False, None
            ctrdir = os.fsdecode(request)
            parent = os.path.dirname(ctrdir.rstrip("/"))
            if not ctrdir or parent != containers_dir or "/." in ctrdir[len(parent) :]:
                conn.sendall(b"error: not a container of this store")
                return True, None
            pid = os.fork()
            if pid == 0:
                # This child relays the supervisor's answer, then exits. It
                # takes the raw descriptor: the socket objects must not close a
                # descriptor number that the supervisor has reused since
                # detach() closed what it inherited.
                code = 0
                listener.close()
                conn.setblocking(True)
                fd = conn.detach()
                try:
                    os.write(fd, fork_supervisor(ctrdir))
                except BaseException as err:  # noqa: BLE001  (the starter waits for a word)
                    try:
                        os.write(fd, f"error: {err!r}".encode())
                    except OSError:
                        pass
                    code = 1
                os._exit(code)
            return True, pid
        except OSError:
            pass
        return True, None


def _serve_all(listener: socket.socket, containers_dir: str) -> None:
    """Serve until asked to quit or idle for ZYGOTE_IDLE seconds, reaping each
    relay as it exits (by its pidfd: none lingers as a zombie in ``ps``)."""
    gc.collect()
    gc.freeze()  # the supervisors it forks then leave these objects' pages shared
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    relays: dict[int, int] = {}  # pidfd -> pid
    serving = True
    while serving:
        events = poller.poll(None if relays else int(ZYGOTE_IDLE * 1000))
        if not events:
            break  # idle
        for fd, _ in events:
            if fd in relays:
                poller.unregister(fd)
                os.close(fd)
                os.waitpid(relays.pop(fd), 0)
                continue
            try:
                conn, _ = listener.accept()
            except OSError:  # (out of descriptors, say)
                serving = False
                break
            serving, relay = _serve(conn, containers_dir, listener)
            if relay is not None:
                relay_fd = os.pidfd_open(relay)
                relays[relay_fd] = relay
                poller.register(relay_fd, select.POLLIN)
    # Answer the requests already queued, then stop. A client that connects
    # after the last of them is refused (reset) before anything was read:
    # it starts another zygote. (The relays still running are init's to reap.)
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            break
        conn.setblocking(True)
        _serve(conn, containers_dir, listener)
    listener.close()


def _listen(name: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(zygote_address(name))
    listener.listen(128)
    return listener


def zygote(name: str, containers_dir: str) -> int:
    """``--zygote NAME CONTAINERS_DIR``: fork into the background and serve
    the containers of ``containers_dir`` at ``zygote_address(name)``; exit 0
    once it listens (or when another process holds that address already),
    else 1 with the reason on stderr. Raises OSError when it cannot fork (the
    zygote itself ends with os._exit)."""
    return serve_in_background(
        "zygote", name, lambda: _listen(name), lambda listener: _serve_all(listener, containers_dir)
    )
