"""The supervisor's parts on their own (no LXC): what the library and a
supervisor write for each other, the answers, and telling a container that
liblxc could not start from one whose command was quick."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylxcore.procs import process_start_time, read_stat
from pylxcore.runtime.launch import PROGRAM
from pylxcore.supervisor.lxcexec import died_in_setup
from pylxcore.supervisor.protocol import OK, START_FAILED, start_failure_lines
from pylxcore.supervisor.runspec import RunSpec, UsernsSpec
from pylxcore.supervisor.state import SCHEMA as STATE_SCHEMA
from pylxcore.supervisor.state import write_state


def zombie(name: str, *, killed: bool) -> int:
    """A child named ``name`` that has ended (killed by SIGKILL, or exited 0) and is not reaped yet."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child never returns)
        with open("/proc/self/comm", "w") as fh:
            fh.write(name)
        if killed:
            time.sleep(60)
        os._exit(0)
    if killed:
        until = time.monotonic() + 10
        while (read_stat(pid) or (b"", [b""]))[0] != name.encode() and time.monotonic() < until:
            time.sleep(0.001)
        os.kill(pid, signal.SIGKILL)
    until = time.monotonic() + 10
    while (read_stat(pid) or (b"", [b"Z"]))[1][0] != b"Z" and time.monotonic() < until:
        time.sleep(0.001)
    return pid


def test_a_first_process_killed_in_setup_is_told_from_an_init_that_exited() -> None:
    # liblxc's init keeps lxc-execute's name: a container whose command ran
    # and exited before the supervisor saw it leaves such a zombie as well.
    for killed in (True, False):
        pid = zombie("lxc-execute", killed=killed)
        try:
            assert process_start_time(pid) is None  # a zombie has ended
            assert died_in_setup(pid, "/usr/bin/lxc-execute") is killed
            assert not died_in_setup(pid, "/usr/bin/other")
        finally:
            os.waitpid(pid, 0)
    assert not died_in_setup(pid, "/usr/bin/lxc-execute")  # reaped: no such process
    assert process_start_time(os.getpid()) == int(
        Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    )


def test_run_spec_and_userns_spec_read_what_was_written(tmp_path: Path) -> None:
    env = {"PATH": "/bin", "WEIRD": "a=b\tc \udcff"}  # (surrogates: bytes that are not UTF-8)
    RunSpec(
        ["lxc-execute", "-n", "x", "--", "sh", "-c", "echo 'a b'"],
        env=env,
        auto_remove=True,
        oom_path="/sys/fs/cgroup/x/memory.events",
        log_max_size=100,
        log_max_files=3,
    ).write(str(tmp_path))
    assert (tmp_path / "run.spec").stat().st_mode & 0o777 == 0o600  # the env may hold secrets
    spec = RunSpec.read(str(tmp_path))
    assert (spec.argv, spec.env, spec.auto_remove, spec.oom_path, spec.log_max_size, spec.log_max_files) == (
        ["lxc-execute", "-n", "x", "--", "sh", "-c", "echo 'a b'"],
        env,
        True,
        "/sys/fs/cgroup/x/memory.events",
        100,
        3,
    )
    (tmp_path / "run.spec").write_bytes(b"0\0")
    with pytest.raises(ValueError):
        RunSpec.read(str(tmp_path))
    assert not UsernsSpec.exists(str(tmp_path))
    UsernsSpec((1000000, 65536, 1000000, 65536), ["/l/2", "/l/1"], ["relative/keep"]).write(str(tmp_path))
    userns = UsernsSpec.read(str(tmp_path))
    assert UsernsSpec.exists(str(tmp_path))
    assert (userns.ids, userns.lowers, userns.keep) == (
        (1000000, 65536, 1000000, 65536),
        ["/l/2", "/l/1"],
        [os.path.abspath("relative/keep")],
    )


def test_the_state_is_json_written_whole(tmp_path: Path) -> None:
    state: dict[str, object] = {
        "status": "exited",
        "shim_pid": 12,
        "shim_start": None,
        "finished_at": 1700000000.25,
        "exit_code": 137,
        "oom_killed": True,
    }
    path = tmp_path / "state.json"
    write_state(str(path), state)
    written = {"schema": STATE_SCHEMA, **state}  # (the document says its layout first)
    assert json.loads(path.read_text()) == written
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        write_state(str(path), {"status": object()})
    assert json.loads(path.read_text()) == written  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_answers() -> None:
    assert start_failure_lines(OK) is None
    assert start_failure_lines(b"error: cannot run /usr/bin/lxc-execute") is None
    lines = start_failure_lines(START_FAILED + b"\nlxc-execute x ERROR a\nlxc-execute x ERROR b\n")
    assert lines == ["lxc-execute x ERROR a", "lxc-execute x ERROR b"]


def test_the_program_imports_only_small_modules() -> None:
    # A supervisor started by a fresh interpreter pays for every import
    # before its container runs: no typing, re, json or socket (those cost
    # milliseconds each), and no site-packages.
    argv = [sys.executable, "-I", "-S", "-X", "importtime", PROGRAM]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 2 and "usage:" in out.stderr, out
    loaded = {
        line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")
    }
    assert "pylxcore.supervisor.supervise" in loaded
    assert not loaded & {"typing", "re", "json", "socket", "site", "subprocess"}, loaded


def test_an_auto_remove_stages_under_an_owner_tag_that_check_spares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A supervisor of a --rm container renames its dir into the store's tmp/
    # and deletes it there; Engine.check() deletes tmp/ entries whose owner
    # has died, so the staging dir must name its (live) owner.
    from pylxcore.procs import owner_alive
    from pylxcore.supervisor.supervise import _remove_dir

    ctrdir = tmp_path / "containers" / "abc"
    (ctrdir / "rootfs").mkdir(parents=True)
    (ctrdir / "state.json").write_text("{}")
    (tmp_path / "tmp").mkdir()
    staged: list[str] = []
    rename = os.rename

    def recording_rename(src: str, dst: str) -> None:
        staged.append(os.path.basename(os.path.dirname(dst)))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", recording_rename)
    _remove_dir(str(ctrdir))
    assert len(staged) == 1 and staged[0].startswith("rm-ctr-")
    assert owner_alive(staged[0])
    assert not ctrdir.exists() and list((tmp_path / "tmp").iterdir()) == []
