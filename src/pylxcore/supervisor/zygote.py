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

import errno
import gc
import os
import socket

# Loaded here for the supervisors it forks to share (a supervisor that loads
# it itself, for a container with a terminal or stdin, pays ~0.5 MB of its own).
import pylxcore.supervisor.attachsock  # noqa: F401
from pylxcore.procs import detach
from pylxcore.supervisor.protocol import OK, QUIT, peer_credentials, zygote_address
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


def _serve(conn: socket.socket, containers_dir: str, listener: socket.socket) -> bool:
    """Answer one request on ``conn`` (and close it); False when it was the request to quit."""
    with conn:
        try:
            if peer_credentials(conn)[1] != os.geteuid():
                return True
            request = _read_request(conn)
            if request == QUIT:
                return False
            ctrdir = os.fsdecode(request)
            parent = os.path.dirname(ctrdir.rstrip("/"))
            if not ctrdir or parent != containers_dir or "/." in ctrdir[len(parent) :]:
                conn.sendall(b"error: not a container of this store")
                return True
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
        except OSError:
            pass
        return True


def _reap() -> None:
    """Reap the children that relayed their supervisor's answer."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def zygote(name: str, containers_dir: str) -> int:
    """``--zygote NAME CONTAINERS_DIR``: fork into the background and serve
    the containers of ``containers_dir`` at ``zygote_address(name)``; exit 0
    once it listens (or when another process holds that address already),
    else 1 with the reason on stderr. Raises OSError when it cannot fork (the
    zygote itself ends with os._exit)."""
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        os.close(ready_w)
        msg = os.read(ready_r, 4096)
        if msg == OK:
            return 0
        os.write(2, (msg or b"error: the zygote died before it listened") + b"\n")
        return 1
    os.close(ready_r)
    detach(ready_w)
    os.chdir("/")
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(zygote_address(name))
        listener.listen(128)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            os.write(ready_w, OK)  # another zygote serves this root
            os._exit(0)
        os.write(ready_w, f"error: the zygote cannot listen as {name}: {err}".encode())
        os._exit(1)
    os.write(ready_w, OK)
    os.close(ready_w)
    gc.collect()
    gc.freeze()  # the supervisors it forks then leave these objects' pages shared
    listener.settimeout(ZYGOTE_IDLE)
    serving = True
    while serving:
        try:
            conn, _ = listener.accept()
        except OSError:  # idle for ZYGOTE_IDLE seconds (TimeoutError), or out of descriptors
            break
        serving = _serve(conn, containers_dir, listener)
        _reap()
    # Answer the requests already queued, then stop. A client that connects
    # after the last of them is refused (reset) before anything was read:
    # it starts another zygote.
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            break
        conn.setblocking(True)
        _serve(conn, containers_dir, listener)
    listener.close()
    os._exit(0)
