"""The attach server: one small process per store root attaches every exec,
so the caller is never forked. It starts on demand, reaps what it attached
(the caller runs no reaper thread), serves only its own user and store,
ends when idle or at Engine.close(), and a server killed mid-exec gives a
typed error, never a hang. What it attaches starts with SIGPIPE at its
default, as under ``docker exec``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from pylxcore import Engine
from pylxcore.errors import LXCError
from pylxcore.runtime import attach_client
from tests.conftest import until

NOBODY = 65534
SIGPIPE_BIT = 1 << (signal.SIGPIPE - 1)
SIGXFSZ_BIT = 1 << (signal.SIGXFSZ - 1)


def server_pid(engine: Engine) -> int | None:
    """The pid of the root's attach server, None when none listens."""
    conn = attach_client._connect(str(engine.store.containers_dir))
    if conn is None:
        return None
    conn[0].close()
    return conn[1]


def exited(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` has exited (or does within ``timeout`` seconds)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_exec_has_sigpipe_and_sigxfsz_at_their_defaults(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    # `yes` ends by SIGPIPE once `head` has gone, silently; ignoring SIGPIPE, it
    # would write on and fail with EPIPE ("Broken pipe" on stderr).
    result = c.exec(["sh", "-c", "yes | head -1"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"y\n", b"")
    status = c.exec(["cat", "/proc/self/status"]).stdout.decode()
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    assert not ignored & SIGPIPE_BIT and not ignored & SIGXFSZ_BIT, hex(ignored)
    # The caller itself (Python) still ignores SIGPIPE: the server does not pass that on.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN


def test_the_servers_name_covers_every_module_it_runs() -> None:
    # The server is named after a hash of its sources: a module it imports
    # but the hash leaves out could change under a server that keeps running.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pylxcore.runtime.attacher;"
        " print(' '.join(m.__file__ for n, m in sys.modules.items() if n.startswith('pylxcore')))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, attach_client._LIBRARY], capture_output=True, text=True, check=True
    ).stdout.split()
    package = os.path.join(attach_client._LIBRARY, "pylxcore")
    imported = {os.path.relpath(path, package) for path in out}
    hashed = set(attach_client._SOURCES)
    assert imported <= hashed, sorted(imported - hashed)


def _anon_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line.split()[1] for line in fh if line.startswith("RssAnon:")))


def test_the_servers_heap_does_not_grow_with_its_execs(engine: Engine, busybox: str) -> None:
    # python3-lxc's Container holds itself (.network): each exec's container
    # object and liblxc's config behind it (~120 KB) stayed until the cycle
    # collector ran, which the server seldom does (+4.8 MB over 50 execs).
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    for _ in range(5):
        c.exec(["true"])
    pid = server_pid(engine)
    assert pid is not None
    before = _anon_kb(pid)
    for _ in range(60):
        assert c.exec(["true"]).exit_code == 0
    assert server_pid(engine) == pid  # (the same server: MOST is higher)
    assert _anon_kb(pid) - before < 1500, (before, _anon_kb(pid))


def test_the_server_starts_on_demand_reaps_and_ends_at_close(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    engine.close()
    assert server_pid(engine) is None
    stream = c.exec_stream(["sleep", "30"])
    pid = server_pid(engine)
    assert pid is not None and pid != os.getpid()
    # The command is the server's child, not ours, and no thread of ours waits for it.
    with open(f"/proc/{stream.pid}/status") as fh:
        ppid = int(next(line.split()[1] for line in fh if line.startswith("PPid:")))
    assert ppid == pid
    assert not [t for t in threading.enumerate() if "reaper" in t.name]
    stream.close()
    assert stream.wait() == 137
    assert c.exec(["true"]).exit_code == 0
    assert server_pid(engine) == pid  # one server for every exec
    engine.close()
    assert exited(pid, 10)
    assert server_pid(engine) is None
    assert c.exec(["sh", "-c", "exit 3"]).exit_code == 3  # a new one, on demand
    assert server_pid(engine) not in (None, pid)


def test_the_server_exits_when_idle_but_not_while_an_exec_runs(
    engine: Engine, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    engine.close()
    monkeypatch.setattr(attach_client, "IDLE", 0.5)
    stream = c.exec_stream(["sleep", "2"])
    pid = server_pid(engine)
    assert pid is not None
    assert not exited(pid, 1.2)  # it still has an exec to reap
    assert list(stream) == [] and stream.exit_code == 0
    assert exited(pid, 5)
    assert server_pid(engine) is None


def test_a_server_hands_over_after_its_most_attaches_and_its_execs_still_end(
    engine: Engine, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (liblxc's attach leaks memory in whoever attaches: a server lives for so many only)
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    engine.close()
    monkeypatch.setattr(attach_client, "MOST", 2)
    first = c.exec_stream(["sh", "-c", "sleep 1; exit 5"])
    old = server_pid(engine)
    assert c.exec(["true"]).exit_code == 0  # its second: it stops listening
    assert c.exec(["sh", "-c", "exit 6"]).exit_code == 6  # by a new one
    new = server_pid(engine)
    assert old is not None and new not in (None, old)
    assert not exited(old, 0.1)  # it still has an exec to reap
    assert first.wait() == 5
    assert exited(old, 5)


def _ask_as(engine: Engine, key: str, uid: int | None) -> dict[str, object] | None:
    """Send an exec request that touches /tmp/asked in container ``key`` from a
    process of ``uid``; the server's first answer (None when it closed on us)."""
    code = (
        "import array, json, os, socket, sys\n"
        "if sys.argv[2] != 'None': os.setuid(int(sys.argv[2]))\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "s.settimeout(20)\n"
        "s.connect(bytes.fromhex(sys.argv[1]))\n"
        "req = {'container': sys.argv[3], 'argv': ['touch', '/tmp/asked'],\n"
        "       'env': {'PATH': '/bin:/usr/bin'}, 'cwd': '/', 'uid': 0, 'gid': 0, 'tty': False}\n"
        "r, w = os.pipe()\n"
        "try:\n"
        "    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [r, w, w]))]\n"
        "    s.sendmsg([json.dumps(req).encode()], rights)\n"
        "    reply = s.recv(65536)\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    reply = b''\n"
        "sys.stdout.write(reply.decode() or 'null')\n"
    )
    address = b"\0" + attach_client.attacher_name(str(engine.store.containers_dir)).encode()
    argv = [sys.executable, "-c", code, address.hex(), str(uid), key]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    answer = json.loads(out)
    assert answer is None or isinstance(answer, dict)
    return answer


def test_the_server_serves_only_its_own_user_and_store(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    assert c.exec(["true"]).exit_code == 0  # (a server runs)
    assert _ask_as(engine, c.key, NOBODY) is None  # closed unanswered
    assert c.exec(["test", "-e", "/tmp/asked"]).exit_code == 1
    # Nothing but a plain container of its own store.
    for key in ("../containers/" + c.key, ".", "/" + c.key):
        answer = _ask_as(engine, key, None)
        assert answer is not None and "error" in answer, (key, answer)
    assert c.exec(["test", "-e", "/tmp/asked"]).exit_code == 1
    # The same request from its own user is served (so the refusals above are refusals).
    answer = _ask_as(engine, c.key, None)
    assert answer is not None and isinstance(answer.get("pid"), int), answer
    until(lambda: c.exec(["test", "-e", "/tmp/asked"]).exit_code == 0, 10, "the request ran")


def test_a_server_killed_mid_exec_gives_a_typed_error_not_a_hang(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    stream = c.exec_stream(["sh", "-c", "echo up; exec sleep 600"])
    chunks = iter(stream)
    assert next(chunks) == ("stdout", b"up\n")
    pid = server_pid(engine)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(LXCError, match="the attach server died"):
        for _ in chunks:
            pass
    assert time.monotonic() - started < 10
    with pytest.raises(LXCError, match="the attach server died"):
        stream.wait()
    assert exited(stream.pid, 10)  # killed: nothing would have reported its end
    assert c.exec(["echo", "again"]).stdout == b"again\n"  # a new server


def test_an_exec_with_no_server_to_be_had_says_why(
    engine: Engine, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One way only: no attach from the caller's own process when the server cannot start.
    c = engine.containers.run(busybox, ["sleep", "3600"], detach=True)
    engine.close()
    failing = "import sys; sys.stderr.write('no bindings here'); sys.exit(1)"
    monkeypatch.setattr(attach_client, "_BOOT", failing)
    with pytest.raises(LXCError, match="cannot start the attach server .*no bindings here"):
        c.exec(["true"])
    assert server_pid(engine) is None
    monkeypatch.undo()
    assert c.exec(["true"]).exit_code == 0
