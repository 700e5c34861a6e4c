"""Asking the store's attach server (pylxcore.runtime.attacher) to attach a
command, from the library's side: its name, starting it on demand, the
request, and ending it (Engine.close()). The one way an exec starts: when
no server can be had, the exec fails (LXCError) rather than fork the caller.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
from pathlib import Path

import pylxcore
from pylxcore.errors import LXCError
from pylxcore.runtime.launch import run_to_end

# How long an attach server with nothing to do waits for a request, in seconds.
IDLE = 10.0
# liblxc 5.0.2's attach leaves a descriptor open in the attaching process
# each time (a pidfd of the container's init; measured: one per attach, with
# one container object or a new one each time): after this many, a server
# stops listening (the next exec starts a fresh one, ~50 ms) and exits once
# its execs end, far below any usual limit on open files. (The ~120 KB of
# heap each attach seemed to leak was python3-lxc's reference cycle: see
# liblxc.Handle._container.)
MOST = 128

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); from pylxcore.runtime.attacher import main;"
    " sys.exit(main(sys.argv[2:]))"
)
_LIBRARY = str(Path(pylxcore.__file__).resolve().parent.parent)  # (the directory holding pylxcore)
# What the server imports of the library (and this client, the protocol's other end).
_SOURCES = (
    "__init__.py",
    "errors.py",
    "procs.py",
    "runtime/__init__.py",
    "runtime/attacher.py",
    "runtime/liblxc.py",
    "runtime/attach_client.py",
)


@functools.cache
def _code_tag() -> bytes:
    """What the server runs: this interpreter, the sources it imports and this
    client's (the protocol's two ends), so that a changed library never asks
    a server that runs older code."""
    import hashlib  # (deferred: only the first exec needs it)

    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}\0{_LIBRARY}\0".encode())
    package = Path(_LIBRARY) / "pylxcore"
    for rel in _SOURCES:
        digest.update((package / rel).read_bytes())
    return digest.digest()


def attacher_name(lxcpath: str) -> str:
    """The name of the attach server of the store whose containers are in
    ``lxcpath``: one per store and code. Raises OSError when the library's
    sources cannot be read."""
    import hashlib  # (see _code_tag)

    key = hashlib.sha256(_code_tag() + os.fsencode(lxcpath)).hexdigest()[:32]
    return f"pylxcore-attach-{key}"


def _address(lxcpath: str) -> bytes:
    return b"\0" + attacher_name(lxcpath).encode()


def _connect(lxcpath: str) -> tuple[socket.socket, int] | None:
    """A connection to the store's server and its pid; None when none listens.
    Raises OSError, LXCError (the address is held by another uid)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(_address(lxcpath))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    pid, uid = (int.from_bytes(creds[i : i + 4], sys.byteorder) for i in (0, 4))
    # The address is anyone's to take: only a server of our own uid may answer.
    if uid != os.geteuid():
        sock.close()
        raise LXCError(
            f"the attach server's address {attacher_name(lxcpath)} is held by a process of uid {uid}",
            operation="exec",
        )
    return sock, pid


def _start(lxcpath: str) -> None:
    """Start the store's attach server. Raises LXCError saying why it cannot."""
    args = [attacher_name(lxcpath), lxcpath, str(IDLE), str(MOST)]
    argv = [sys.executable, "-I", "-c", _BOOT, _LIBRARY, *args]
    try:
        code, said = run_to_end(argv)
    except OSError as err:
        code, said = 1, str(err).encode()
    if code != 0:
        why = said.decode(errors="replace").strip() or f"it exited {code}"
        raise LXCError(f"cannot start the attach server of {lxcpath}: {why}", operation="exec", detail=why)


def _receive(sock: socket.socket) -> tuple[dict[str, object] | None, int | None]:
    """One answer of the server (None when it closed) and the descriptor it
    came with. Raises OSError."""
    data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4))
    fd = None
    for level, kind, raw in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(raw) >= 4:
            fd = int.from_bytes(raw[:4], sys.byteorder, signed=True)
    if not data:
        if fd is not None:
            os.close(fd)
        return None, None
    answer = json.loads(data)
    return (answer if isinstance(answer, dict) else None), fd


def attach(
    lxcpath: str, key: str, request: dict[str, object], fds: tuple[int, int, int]
) -> tuple[int, int | None, socket.socket]:
    """Have the store's attach server run ``request`` (see
    pylxcore.runtime.attacher) in container ``key`` with ``fds`` as its
    stdin, stdout and stderr, starting the server when none runs. (Its pid,
    its pidfd (None when liblxc lost the process), the connection that then
    brings its exit code.) Raises LXCError (liblxc's refusal, as
    Handle.attach raises it; no server could be had or it died)."""
    from array import array  # (deferred: only exec needs it)

    payload = json.dumps({"container": key, **request}).encode()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds).tobytes())]
    for _ in range(3):
        try:
            conn = _connect(lxcpath)
            if conn is None:
                _start(lxcpath)
                continue
            sock, server = conn
        except OSError as err:
            raise LXCError(f"cannot reach the attach server of {lxcpath}: {err}", operation="exec") from err
        try:
            sock.sendmsg([payload], rights)
            answer, pidfd = _receive(sock)
        except (ConnectionResetError, BrokenPipeError):
            # Reset unread: a server on its way out (idle, or closed). It
            # attaches only what it has read: ask the next one.
            sock.close()
            continue
        except (OSError, ValueError) as err:
            sock.close()
            raise LXCError(f"the attach server of {lxcpath} failed: {err}", operation="exec") from err
        if answer is None:
            sock.close()
            raise LXCError(
                f"the attach server (pid {server}) of {lxcpath} died while it attached:"
                " the command may have run",
                operation="exec",
            )
        if "error" in answer:
            sock.close()
            raise LXCError(
                str(answer["error"]),
                operation=str(answer.get("operation") or "attach to"),
                container=key,
                detail=str(answer.get("detail") or ""),
            )
        pid = answer.get("pid")
        if not isinstance(pid, int):
            sock.close()
            raise LXCError(f"the attach server of {lxcpath} answered {answer!r}", operation="exec")
        return pid, pidfd, sock
    raise LXCError(f"the attach server of {lxcpath} kept closing before it answered", operation="exec")


def receive_exit(sock: socket.socket, server_gone: str) -> int | None:
    """The exit code the server sends on ``sock`` once it has reaped the
    process (blocks until then); None when liblxc lost the process. Raises
    LXCError (``server_gone``) when the server closed without one."""
    try:
        answer, fd = _receive(sock)
    except (OSError, ValueError):
        answer, fd = None, None
    if fd is not None:
        os.close(fd)
    if answer is None or "exit" not in answer:
        raise LXCError(server_gone, operation="exec")
    code = answer["exit"]
    return code if isinstance(code, int) else None


def close_attacher(lxcpath: str) -> None:
    """Ask the attach server of the store whose containers are in ``lxcpath``,
    if one runs, to stop listening, and wait (up to 2 s) until it has exited:
    it does once the execs it runs have ended. Raises nothing."""
    import select

    try:
        conn = _connect(lxcpath)
    except (OSError, LXCError):
        return
    if conn is None:
        return
    sock, pid = conn
    with sock:
        sock.settimeout(10)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            sock.sendmsg([json.dumps({"quit": True}).encode()])
            _receive(sock)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll(2000)
        except (OSError, ValueError):
            pass
        finally:
            os.close(pidfd)
