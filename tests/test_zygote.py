"""The zygote: one process per store root forks the containers' supervisors.
Containers never depend on it; it serves only its own store and user, no
other user can stand in for it, and it goes away by itself. Where no zygote
can be had, a fresh interpreter supervises instead."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pylxcore import Engine, Image
from pylxcore.runtime import launch
from pylxcore.runtime.launch import zygote_name
from pylxcore.supervisor.protocol import zygote_address
from pylxcore.supervisor.runspec import RunSpec
from pylxcore.supervisor.zygote import ZYGOTE_IDLE
from tests.conftest import _our_cgroups, _our_mounts, require_lxc, until

SLEEPER = ["sleep", "3600"]
NOBODY = 65534


def zygotes(engine: Engine) -> list[int]:
    """Pids of this root's zygote processes (not the supervisors it forked)."""
    supervisors = set()
    for d in engine.store.containers_dir.iterdir():
        try:
            supervisors.add(json.loads((d / "state.json").read_text())["shim_pid"])
        except (OSError, ValueError, KeyError):
            pass
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in supervisors:
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--zygote" in argv and str(engine.store.containers_dir).encode() in argv:
            found.append(int(entry))
    return found


def shim_argv(engine: Engine, name: str) -> list[bytes]:
    pid = json.loads((engine.store.containers_dir / name / "state.json").read_text())["shim_pid"]
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def address(engine: Engine) -> bytes:
    return zygote_address(zygote_name(engine.store.containers_dir))


def ask(engine: Engine, request: bytes, *, uid: int | None = None) -> bytes:
    """Send ``request`` to the store's zygote (as ``uid``, from a child process);
    what came back before it closed."""
    code = (
        "import os, socket, sys\n"
        "if sys.argv[2] != 'None': os.setuid(int(sys.argv[2]))\n"
        "with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:\n"
        "    s.settimeout(10)\n"
        "    s.connect(bytes.fromhex(sys.argv[1]))\n"
        "    reply = b''\n"
        "    try:\n"
        "        s.sendall(bytes.fromhex(sys.argv[3]) + b'\\n')\n"
        "        while chunk := s.recv(4096):\n"
        "            reply += chunk\n"
        "    except (BrokenPipeError, ConnectionResetError):\n"
        "        pass  # closed on us\n"
        "sys.stdout.write(reply.hex())\n"
    )
    argv = [sys.executable, "-c", code, address(engine).hex(), str(uid), request.hex()]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    return bytes.fromhex(out)


def test_detached_supervisors_come_from_one_zygote_even_when_started_at_once(
    engine: Engine, busybox: str
) -> None:
    code = (
        "import sys\nfrom pylxcore import Engine\n"
        "e = Engine(sys.argv[1])\n"
        "for i in range(3):\n"
        "    e.containers.run(sys.argv[2], ['sleep', '3600'], detach=True, name=f'z{sys.argv[3]}-{i}')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(engine.root), busybox, str(n)]) for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    names = [c.name for c in engine.containers.list()]
    assert len(names) == 12
    assert len(zygotes(engine)) == 1
    for name in names:
        assert b"--zygote" in shim_argv(engine, name), name  # forked by it, not a fresh interpreter
    assert all(c.exec(["true"]).exit_code == 0 for c in engine.containers.list())


def test_waited_runs_have_the_zygote_fork_their_supervisor_too(engine: Engine, busybox: str) -> None:
    # The caller is never forked for a supervisor: a run() that waits asks the zygote as well.
    assert engine.containers.run(busybox, ["true"], remove=True).exit_code == 0
    assert len(zygotes(engine)) == 1


def test_the_zygote_leaves_no_zombie_after_a_start(engine: Engine, busybox: str) -> None:
    # Each start's relay child used to stay a zombie ("[python] <defunct>" in
    # ps) until the next request, or until the idle zygote exited.
    for _ in range(2):
        engine.containers.run(busybox, SLEEPER, detach=True)
    [zygote] = zygotes(engine)

    def zombie_children() -> list[str]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[1] == str(zygote) and fields[0] == "Z":
                found.append(entry)
        return found

    until(lambda: zombie_children() == [], timeout=ZYGOTE_IDLE / 2, what="the zygote to reap its relays")
    assert zygotes(engine) == [zygote]  # (reaped while it still serves)


def test_containers_outlive_their_zygote_killed_or_closed(engine: Engine, busybox: str) -> None:
    first = engine.containers.run(busybox, SLEEPER, detach=True)
    [zygote] = zygotes(engine)
    os.kill(zygote, signal.SIGKILL)
    until(lambda: zygote not in zygotes(engine), what="the zygote to die")
    assert first.exec(["echo", "alive"]).stdout == b"alive\n"
    # The kernel freed its address with it; the next start starts a new zygote.
    second = engine.containers.run(busybox, SLEEPER, detach=True)
    assert b"--zygote" in shim_argv(engine, second.name)
    assert len(zygotes(engine)) == 1 and zygotes(engine) != [zygote]
    engine.close()
    assert zygotes(engine) == []
    assert first.status() == second.status() == "running"
    first.stop(timeout=1)
    assert first.exit_code == 143
    third = engine.containers.run(busybox, ["sh", "-c", "exit 7"], detach=True)
    assert third.wait(timeout=30) == 7


def test_the_zygote_exits_when_idle(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True)
    assert len(zygotes(engine)) == 1
    until(lambda: zygotes(engine) == [], timeout=ZYGOTE_IDLE + 20, what="the idle zygote to exit")
    assert c.status() == "running"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(address(engine))  # nothing is left at its address


def test_the_zygote_starts_only_containers_of_its_own_store(
    engine: Engine, busybox: str, tmp_path: Path
) -> None:
    engine.containers.run(busybox, SLEEPER, detach=True)
    # A directory dressed as a container, outside the store's containers dir.
    fake = tmp_path / "fake"
    fake.mkdir()
    RunSpec(["/bin/touch", str(tmp_path / "pwned")], env={}).write(str(fake))
    for request in [str(fake), str(engine.store.containers_dir / ".." / "tmp"), ""]:
        assert ask(engine, request.encode()) == b"error: not a container of this store", request
    assert not (tmp_path / "pwned").exists()


def test_the_zygote_serves_no_other_user(engine: Engine, busybox: str, tmp_path: Path) -> None:
    engine.containers.run(busybox, SLEEPER, detach=True)
    # A container dir of the store itself, which it would serve to its own user.
    fake = engine.store.containers_dir / "fake"
    fake.mkdir()
    RunSpec(["/bin/touch", str(tmp_path / "pwned")], env={}).write(str(fake))
    try:
        assert ask(engine, str(fake).encode(), uid=NOBODY) == b""  # closed unanswered
        assert not (tmp_path / "pwned").exists()
        assert not (fake / "state.json").exists()
    finally:
        os.unlink(fake / "run.spec")
        fake.rmdir()


def test_another_user_cannot_stand_in_for_the_zygote(engine: Engine, busybox: str) -> None:
    # Another user takes the zygote's address first: the library sees whose
    # it is, asks nothing of it, and supervises with a fresh interpreter.
    squat = (
        "import os, socket, sys\n"
        "os.setuid(int(sys.argv[2]))\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "s.bind(bytes.fromhex(sys.argv[1]))\n"
        "s.listen(8)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    try:\n"
        "        c.sendall(b'ok')\n"
        "    except OSError:\n"
        "        pass  # (the library hung up on it)\n"
        "    c.close()\n"
    )
    squatter = subprocess.Popen(
        [sys.executable, "-c", squat, address(engine).hex(), str(NOBODY)], stdout=subprocess.PIPE
    )
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == b"ready\n"
        c = engine.containers.run(busybox, SLEEPER, detach=True)
        assert b"--zygote" not in shim_argv(engine, c.name)  # a fresh supervisor program
        assert c.exec(["echo", "in"]).stdout == b"in\n"
        result = engine.containers.run(busybox, ["echo", "waited"], remove=True)
        assert (result.exit_code, result.stdout) == (0, b"waited\n")
        assert zygotes(engine) == []
    finally:
        squatter.kill()
        squatter.wait()


def test_a_fresh_interpreter_supervises_when_no_zygote_can_be_had(
    engine: Engine, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "ask_zygote", lambda containers_dir, ctrdir: None)
    result = engine.containers.run(busybox, ["echo", "waited"], remove=True)
    assert (result.exit_code, result.stdout) == (0, b"waited\n")
    c = engine.containers.run(busybox, SLEEPER, detach=True)
    argv = shim_argv(engine, c.name)
    assert argv[:4] == [sys.executable.encode(), b"-I", b"-S", launch.PROGRAM.encode()], argv
    assert c.exec(["echo", "in"]).stdout == b"in\n"
    assert c.stop(timeout=10) == 143
    assert zygotes(engine) == []


def test_a_root_too_long_for_a_socket_path_has_a_zygote_too(tmp_path: Path) -> None:
    # A socket path holds at most 107 bytes; the zygote's address is in no
    # filesystem, so no root is too long for it.
    require_lxc()
    root = tmp_path / ("a-root-whose-path-is-too-long-for-a-unix-socket-address-" * 2)
    engine = Engine(root)
    try:
        engine.images.build(Image("long/busybox:1"))
        result = engine.containers.run("long/busybox:1", ["echo", "waited"], remove=True)
        assert (result.exit_code, result.stdout) == (0, b"waited\n")
        c = engine.containers.run("long/busybox:1", SLEEPER, detach=True)
        assert b"--zygote" in shim_argv(engine, c.name)
        assert c.exec(["echo", "in"]).stdout == b"in\n"
        assert c.stop(timeout=10) == 143
        c.remove()
        engine.close()
        assert zygotes(engine) == []
    finally:
        for left in engine.containers.list(all=True):
            left.remove(force=True)
        engine.close()
    assert not _our_cgroups(engine.store.root_id) + _our_mounts(engine.root)
    assert not (engine.root / "bin").exists()  # no bytecode of its own, no socket file
