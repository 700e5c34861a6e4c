"""Classic breakouts, run as root inside a default container: each must fail.

The attempts are in tests/data/escape.c (static, harmless variants), built
here with the host's gcc and copied into a busybox image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pylxcore import Engine, Image, Layer

ATTEMPTS = [
    "release_agent",
    "mount_disk",
    "mount_proc",
    "mknod_block",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "kexec",
    "sysrq",
    "proc_sys",
    "keyctl",
    "reboot",
    "clock",
    "cgroup_limit",
    "userns",
    "bpf",
]


@pytest.fixture
def escape_image(engine: Engine, tmp_path: Path) -> str:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the escape attempts (scripts/setup installs it)")
    src = Path(__file__).parent / "data" / "escape.c"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(ctx / "escape"), str(src)], check=True)
    engine.images.build(Image("test/escape:1", layers=[Layer.copy("escape", "/usr/bin/escape")]), context=ctx)
    return "test/escape:1"


@pytest.fixture(params=[False, True], ids=["root", "userns"])
def box(engine: Engine, escape_image: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A default container, and one whose root is an unprivileged host uid."""
    with engine.containers.run(escape_image, ["sleep", "3600"], detach=True, userns=request.param) as c:
        yield c


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_breakout_is_blocked(box, attempt: str) -> None:  # type: ignore[no-untyped-def]
    r = box.exec(["escape", attempt])
    assert r.stdout.startswith(b"BLOCKED"), f"{attempt}: {r}"
    assert r.exit_code == 0


def test_ptrace_of_a_host_process_is_blocked(box) -> None:  # type: ignore[no-untyped-def]
    r = box.exec(["escape", "ptrace_host", str(os.getpid())])
    assert r.stdout.startswith(b"BLOCKED"), r


def test_host_processes_and_other_containers_are_invisible(engine: Engine, escape_image: str) -> None:
    with (
        engine.containers.run(escape_image, ["sleep", "3600"], detach=True, name="alice") as a,
        engine.containers.run(escape_image, ["sleep", "3600"], detach=True, name="bob") as b,
    ):
        a.exec(["sh", "-c", "echo alice-secret > /root/secret"])
        pids = b.exec(["sh", "-c", "ls /proc | grep -E '^[0-9]+$'"]).stdout.split()
        assert len(pids) < 10, f"bob sees foreign processes: {pids}"
        found = b.exec(["sh", "-c", "find / -xdev -name secret; grep -rl alice-secret /root /tmp /etc; true"])
        assert found.stdout.strip() == b"", found
        assert b.exec(["cat", "/root/secret"]).exit_code != 0
        assert a.exec(["cat", "/root/secret"]).stdout == b"alice-secret\n"
