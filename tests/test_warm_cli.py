"""The warm path of the ``pylxcore`` command (cli/warm.py, cli/warmserver.py):
a command run by a command server's child must be the command run here —
same output, exit code, streams, directory, umask, environment and
signals — and the server must never serve a stale library, a client in
other namespaces, or outlive its socket."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import pylxcore
from pylxcore import Engine
from tests.conftest import stop_command_servers, until

IMG = "test/busybox:1"
SRC = Path(pylxcore.__file__).resolve().parent.parent


@pytest.fixture
def warm_dir(tmp_path: Path) -> Iterator[Path]:
    """A dir of this test's own for command servers; they are stopped at the end."""
    base = tmp_path / "warm"
    yield base
    stop_command_servers(base)


def _env(engine: Engine, warm_dir: Path, mode: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYLXCORE_ROOT": str(engine.root), "PYLXCORE_WARM_DIR": str(warm_dir),
            "PYLXCORE_WARM": mode, **extra}


def _px(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pylxcore", *args], env=env, capture_output=True,
                          timeout=120, check=False, **kw)  # type: ignore[call-overload]


def _server_pids(base: Path) -> list[int]:
    pids = []
    for lock in base.glob("*.lock"):
        pid = int(lock.read_text().split()[0])
        if os.path.exists(f"/proc/{pid}"):
            pids.append(pid)
    return pids


def _start_server(engine: Engine, warm_dir: Path) -> int:
    """Run one command cold (which starts a server) and wait for the server to serve."""
    assert _px(["ps"], _env(engine, warm_dir, "1")).returncode == 0
    until(lambda: _px(["ps"], _env(engine, warm_dir, "require")).returncode == 0, what="the command server")
    (pid,) = _server_pids(warm_dir)
    return pid


def test_commands_give_the_same_result_warm_and_cold(
    engine: Engine, busybox: str, warm_dir: Path, tmp_path: Path
) -> None:
    _start_server(engine, warm_dir)
    work = tmp_path / "work"
    work.mkdir()
    yaml = "name: warm/test:1\nbase: image:test/busybox:1\nlayers: ['echo hi > /hi']\n"
    (work / "image.yaml").write_text(yaml)
    cases: list[tuple[list[str], bytes | None]] = [
        (["build", "-q", "image.yaml"], None),  # a path relative to the working directory
        (["images", "-q"], None),
        (["run", "--rm", "-e", "FROM_CALLER", IMG, "sh", "-c", 'echo "$FROM_CALLER"; cat /data/base; exit 7'],
         None),
        (["run", "--rm", "-i", IMG, "sh", "-c", "tr a-z A-Z; echo err >&2"], b"piped in\n"),
        (["inspect", "no-such-container"], None),
        (["run", "--rm", IMG, "no-such-program"], None),
        (["ps", "-a", "--no-trunc"], None),
        (["frobnicate"], None),
        (["--help"], None),
    ]
    for args, stdin in cases:
        results = {}
        for mode in ("require", "0"):
            env = _env(engine, warm_dir, mode, FROM_CALLER="caller's value")
            r = _px(args, env, cwd=work, input=stdin if stdin is not None else b"")
            # (a container's generated name differs from run to run)
            results[mode] = (r.returncode, r.stdout, re.sub(rb"px-[0-9a-f]{10}", b"px-N", r.stderr))
        assert results["require"] == results["0"], args


def test_umask_and_closed_streams_are_the_callers(engine: Engine, busybox: str, warm_dir: Path,
                                                    tmp_path: Path) -> None:
    _start_server(engine, warm_dir)
    for mode in ("require", "0"):
        out = tmp_path / f"save-{mode}.tar"
        cmd = f"umask 027; exec {sys.executable} -m pylxcore save -o {out} {IMG} <&-"
        r = subprocess.run(["sh", "-c", cmd], env=_env(engine, warm_dir, mode), capture_output=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert out.stat().st_mode & 0o777 == 0o640, mode


def test_ctrl_c_reaches_the_command_and_a_killed_client_ends_it(engine: Engine, busybox: str,
                                                                 warm_dir: Path) -> None:
    server = _start_server(engine, warm_dir)
    script = "trap 'exit 9' INT; echo started; while true; do sleep 0.1; done"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylxcore", "run", "--name", "wc", IMG, "sh", "-c", script],
        env=_env(engine, warm_dir, "require"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    proc.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C: to the client
    _, err = proc.communicate(timeout=30)
    # The command forwarded it to the container, whose trap's code is the command's.
    assert proc.returncode == 9 and b"Traceback" not in err
    assert engine.containers.get("wc").wait(timeout=10) == 9
    engine.containers.get("wc").remove()

    proc = subprocess.Popen(
        [sys.executable, "-m", "pylxcore", "run", "--name", "wk", IMG, "sleep", "60"],
        env=_env(engine, warm_dir, "require"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    until(lambda: engine.containers.exists("wk") and engine.containers.get("wk").status() == "running",
          what="the container")
    children = _children(server)
    assert children, "the server's child that runs the command"
    proc.kill()
    proc.wait()
    until(lambda: not (set(_children(server)) & set(children)), what="the command's end")
    engine.containers.get("wk").remove(force=True)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_changed_library_is_never_served(engine: Engine, busybox: str, warm_dir: Path,
                                           tmp_path: Path) -> None:
    # A copy of the library of this test's own, so that it can change under its server.
    copy = tmp_path / "src"
    shutil.copytree(SRC / "pylxcore", copy / "pylxcore")
    env = _env(engine, warm_dir, "1", PYTHONPATH=str(copy))
    assert _px(["ps"], env).returncode == 0
    until(lambda: _px(["ps"], {**env, "PYLXCORE_WARM": "require"}).returncode == 0, what="the command server")
    (old,) = _server_pids(warm_dir)
    output = copy / "pylxcore" / "cli" / "containers.py"
    output.write_text(output.read_text().replace('"CONTAINER ID"', '"CHANGED ID"'))
    r = _px(["ps"], env)
    assert r.returncode == 0 and r.stdout.startswith(b"CHANGED ID"), r  # run here, by the new code
    until(lambda: not os.path.exists(f"/proc/{old}"), what="the stale server's exit")
    until(lambda: _px(["ps"], {**env, "PYLXCORE_WARM": "require"}).stdout.startswith(b"CHANGED ID"),
          what="a new server with the new code")


def test_a_client_in_other_namespaces_runs_the_command_itself(engine: Engine, busybox: str,
                                                              warm_dir: Path) -> None:
    _start_server(engine, warm_dir)
    unshare = ["unshare", "--mount", "--propagation", "private",
               sys.executable, "-m", "pylxcore", "images", "-q"]
    r = subprocess.run(unshare, env=_env(engine, warm_dir, "require"), capture_output=True, timeout=60)
    assert r.returncode == 125 and b"no command server served" in r.stderr
    r = subprocess.run(unshare, env=_env(engine, warm_dir, "1"), capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip()


def test_the_dir_is_roots_alone_and_the_server_leaves_with_its_lock(engine: Engine, warm_dir: Path) -> None:
    server = _start_server(engine, warm_dir)
    assert warm_dir.stat().st_mode & 0o777 == 0o700
    (fifo,) = warm_dir.glob("*.fifo")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and fifo.stat().st_mode & 0o777 == 0o600
    (lock,) = warm_dir.glob("*.lock")
    lock.unlink()
    # The next command finds no lock: it runs here and starts another
    # server; the old one sees its lock file gone at its next look and exits.
    assert _px(["ps"], _env(engine, warm_dir, "1")).returncode == 0
    until(lambda: not os.path.exists(f"/proc/{server}"), timeout=30, what="the old server's exit")
    until(lambda: _px(["ps"], _env(engine, warm_dir, "require")).returncode == 0, what="the new server")
