"""Starting a container's supervisor, from the library's side: the store's
zygote forks it (the zygote started on demand), else a fresh interpreter
runs it; and ending the zygote (Engine.close()).

Two ways, no more. The zygote is the rule: a fork of that small process holds
nothing of the caller's memory and shares the zygote's pages, and it skips
an interpreter's start-up. Measured (2 cores, medians of the start alone):
17 ms by the zygote, 53 ms by a fresh interpreter; a fork of the caller,
the third way before, took 20 ms from a small caller but 136 ms from one of
2 GB (a notebook's kernel), and it is unsafe in a caller that runs threads.
A fresh interpreter is the fallback, for when no zygote can be had. See
pylxcore.supervisor for the other side.
"""

from __future__ import annotations

import functools
import os
import select
import sys
from pathlib import Path
from typing import Sequence

import pylxcore.procs
import pylxcore.supervisor
from pylxcore._log import log
from pylxcore.procs import Child
from pylxcore.supervisor.protocol import OK, QUIT, peer_credentials, zygote_address

# The supervisor as a program (see its docstring for how it finds its package).
PROGRAM = str(Path(pylxcore.supervisor.__file__).resolve().parent / "__main__.py")


def run_program(args: Sequence[str]) -> tuple[int, bytes]:
    """Run the supervisor program (a fresh ``python -I -S``) with ``args`` to
    its end; (its exit code, its stderr). What it leaves running in the
    background (a supervisor, a zygote) has closed the descriptors it
    inherited. Raises OSError when it cannot be started."""
    return run_to_end([sys.executable, "-I", "-S", PROGRAM, *args])


def run_to_end(argv: list[str]) -> tuple[int, bytes]:
    """Run ``argv`` (a program that leaves a server in the background, with
    the descriptors it inherited closed) to its end: (its exit code, its
    stderr). Raises OSError when it cannot be started."""
    err_r, err_w = os.pipe()
    try:
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            proc = Child(argv, devnull, devnull, err_w)
        finally:
            os.close(devnull)
    except BaseException:
        os.close(err_r)
        raise
    finally:
        os.close(err_w)
    chunks = []
    try:
        while chunk := os.read(err_r, 65536):
            chunks.append(chunk)
    finally:
        os.close(err_r)
        code = proc.wait()
    return code, b"".join(chunks)


@functools.cache
def _code_tag() -> bytes:
    """What the supervisor runs: this interpreter and the sources of the
    supervisor and of the helper it imports. A zygote is found by it, so that
    a changed library never asks a zygote that runs older code."""
    import hashlib  # (deferred: ~4 ms, and only starts need it)

    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}\0".encode())
    package = Path(pylxcore.supervisor.__file__).parent
    for path in [*sorted(package.glob("*.py")), Path(pylxcore.procs.__file__)]:
        digest.update(path.read_bytes())
    return digest.digest()


def zygote_name(containers_dir: Path) -> str:
    """The name of the zygote of the store whose containers are in
    ``containers_dir`` (see pylxcore.supervisor.protocol.zygote_address). One
    per store and supervisor code; short whatever the root's path. Raises
    OSError when the supervisor's sources cannot be read."""
    import hashlib  # (see _code_tag)

    key = hashlib.sha256(_code_tag() + os.fsencode(containers_dir)).hexdigest()[:32]
    return f"pylxcore-zygote-{key}"


def ask_zygote(containers_dir: Path, ctrdir: Path) -> bytes | None:
    """Ask the store's zygote to start the supervisor of the container at
    ``ctrdir``, starting the zygote first when none listens. The supervisor's
    answer (see pylxcore.supervisor.protocol); None when no zygote could take
    the request, and nothing was started. Raises nothing."""
    import socket  # (deferred: ~4 ms, and only starts need it)

    try:
        name = zygote_name(containers_dir)
    except OSError as err:
        log("debug", "no zygote: %s", err)
        return None
    for _ in range(3):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(120)
            try:
                sock.connect(zygote_address(name))
                owner = peer_credentials(sock)[1]
            except ConnectionRefusedError:  # (no zygote listens)
                try:
                    code, said = run_program(["--zygote", name, str(containers_dir)])
                except OSError as why:
                    code, said = 1, str(why).encode()
                if code != 0:
                    log("debug", "no zygote: %s", said.decode(errors="replace").strip())
                    return None
                continue
            except OSError as err:
                log("debug", "the zygote failed us: %s", err)
                return None
            # The address is anyone's to take: only a zygote of our own uid may answer.
            if owner != os.geteuid():
                log("debug", "the zygote's address %s is held by uid %d", name, owner)
                return None
            chunks: list[bytes] = []
            try:
                sock.sendall(os.fsencode(ctrdir) + b"\n")
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except (ConnectionResetError, BrokenPipeError):
                # Refused unread: a zygote on its way out. It starts a
                # supervisor only once it has read a whole request.
                if chunks:
                    return b"".join(chunks)
                continue
            except OSError as err:
                # It may have started the supervisor: never start a second.
                return f"error: no answer from the supervisor's zygote: {err}".encode()
            if chunks:
                return b"".join(chunks)
            # Closed unanswered: it was exiting as we came. Nothing was started.
    return None


def start_supervisor(containers_dir: Path, ctrdir: Path) -> bytes:
    """Start the supervisor of the container at ``ctrdir`` (its run.spec
    written) in the store whose containers are in ``containers_dir``: by the
    store's zygote, else by a fresh interpreter. Its answer (see
    pylxcore.supervisor.protocol): OK once the container runs, else what
    went wrong. Raises OSError when no interpreter can be started."""
    answer = ask_zygote(containers_dir, ctrdir)
    if answer is None:
        code, err = run_program([str(ctrdir)])
        answer = OK if code == 0 else err.rstrip(b"\n") or f"error: the supervisor exited {code}".encode()
    return answer


def close_zygote(containers_dir: Path) -> None:
    """Ask the zygote of the store whose containers are in ``containers_dir``,
    if one runs, to exit now (it would after a few idle seconds anyway), and
    wait (up to 10 s) until it has. Supervisors it started run on. Raises nothing."""
    import socket  # (see ask_zygote)

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        try:
            sock.connect(zygote_address(zygote_name(containers_dir)))
            pid, uid, _ = peer_credentials(sock)
            if uid != os.geteuid():
                return
            pidfd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            sock.sendall(QUIT + b"\n")
            while sock.recv(4096):
                pass
            # It answers the requests queued before ours, then exits; the
            # pidfd becomes readable when it has.
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll(10_000)
        except OSError:
            pass
        finally:
            os.close(pidfd)
