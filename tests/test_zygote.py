"""The zygote: one process per store root forks the containers' supervisors.
Containers never depend on it; it serves only its own store and
user, and it goes away by itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from pylxcore import Engine, Image
from pylxcore.supervisor.shim import ZYGOTE_IDLE
from tests.conftest import _our_cgroups, _our_mounts, require_lxc, until

SLEEPER = ["sleep", "3600"]


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


def test_containers_outlive_their_zygote_killed_or_closed(engine: Engine, busybox: str) -> None:
    first = engine.containers.run(busybox, SLEEPER, detach=True)
    [zygote] = zygotes(engine)
    os.kill(zygote, signal.SIGKILL)
    until(lambda: zygote not in zygotes(engine), what="the zygote to die")
    assert first.exec(["echo", "alive"]).stdout == b"alive\n"
    # Its socket file is left behind; the next start replaces it with a new zygote.
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
    assert not [p for p in (engine.root / "bin").iterdir() if p.suffix == ".sock"]


def test_the_zygote_starts_only_containers_of_its_own_store(
    engine: Engine, busybox: str, tmp_path: Path
) -> None:
    engine.containers.run(busybox, SLEEPER, detach=True)
    [sock_path] = [p for p in (engine.root / "bin").iterdir() if p.suffix == ".sock"]
    assert sock_path.stat().st_mode & 0o777 == 0o600
    # A directory dressed as a container, outside the store's containers dir.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "run.spec").write_bytes(b"0\0\0/bin/touch\0" + str(tmp_path / "pwned").encode())
    for request in [str(fake), str(engine.store.containers_dir / ".." / "tmp"), ""]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(sock_path))
            sock.sendall(request.encode() + b"\n")
            reply = b"".join(iter(lambda s=sock: s.recv(4096), b""))  # type: ignore[misc]
        assert reply == b"error: not a container of this store", request
    assert not (tmp_path / "pwned").exists()


def test_a_root_too_long_for_a_socket_address_runs_without_a_zygote(tmp_path: Path) -> None:
    # A socket path holds at most 107 bytes: under such a root, a run() that
    # waits forks the caller for its supervisor, a detached one starts a
    # fresh interpreter for it, and no zygote is started.
    require_lxc()
    root = tmp_path / ("a-root-whose-path-is-too-long-for-a-unix-socket-address-" * 2)
    engine = Engine(root)
    try:
        assert engine.containers._zygote_socket() is None
        engine.images.build(Image("long/busybox:1"))
        result = engine.containers.run("long/busybox:1", ["echo", "waited"], remove=True)
        assert (result.exit_code, result.stdout) == (0, b"waited\n")
        c = engine.containers.run("long/busybox:1", SLEEPER, detach=True)
        assert b"--zygote" not in shim_argv(engine, c.name)  # a fresh supervisor program
        assert c.exec(["echo", "in"]).stdout == b"in\n"
        assert c.stop(timeout=10) == 143
        c.remove()
        assert zygotes(engine) == []
    finally:
        for left in engine.containers.list(all=True):
            left.remove(force=True)
        engine.close()
    assert not _our_cgroups(engine.store.root_id) + _our_mounts(engine.root)
