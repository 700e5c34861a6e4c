"""How a starter talks with a supervisor, and with the zygote that forks
supervisors: the answers, the zygote's address and request, and who is at
the other end of its socket.

A supervisor answers its starter once, on a pipe or the zygote's socket: OK
once the container runs; START_FAILED, a newline and liblxc's ERROR lines
(the cause first) when liblxc could not start it; else ``error: `` and what
went wrong. A request to the zygote is a container's dir and a newline (or
QUIT and a newline); its answer is the supervisor's.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # (typing itself would cost a fresh supervisor ~10 ms)
if TYPE_CHECKING:
    import socket

OK = b"ok"
START_FAILED = b"start failed"
QUIT = b"\0quit"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def start_failure_lines(answer: bytes) -> list[str] | None:
    """liblxc's ERROR lines when ``answer`` says that liblxc could not start
    the container, else None. Raises nothing."""
    if not answer.startswith(START_FAILED + b"\n"):
        return None
    return answer.decode(errors="replace").strip().splitlines()[1:]


def zygote_address(name: str) -> bytes:
    """The address of the zygote called ``name``: an abstract unix socket. It
    lies in no filesystem, so no root's path is too long for it (a socket
    path holds 107 bytes), no file is left behind by a zygote that was
    killed (the kernel frees the name with the socket), and one zygote at a
    time can hold it. Anyone may connect to it or take the name first: each
    end checks who the other is (see peer_credentials). Raises nothing."""
    return b"\0" + name.encode()


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of unix socket
    ``sock``; for a connection to a listening socket, of the process that
    listened, as it was then. Raises OSError."""
    import socket  # (whoever holds a socket has loaded it already)

    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid
