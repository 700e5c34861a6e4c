"""Classic breakouts, run as root inside a default container and inside a
``userns=True`` one: each must fail.

The attempts are in tests/data/escape.c (static, harmless variants), built
here with the host's gcc and copied into a busybox image."""

from __future__ import annotations

import os
import platform
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

# Docker's default profile lets personality() through with these values only.
PERSONALITY_ALLOWED = ["0x0", "0x8", "0x20000", "0x20008", "0xffffffff"]
PERSONALITY_DENIED = [
    "0x0040000",  # ADDR_NO_RANDOMIZE: no ASLR for what the process execs
    "0x0400000",  # READ_IMPLIES_EXEC: readable memory becomes executable
    "0x0200000",  # ADDR_COMPAT_LAYOUT
    "0x0100000",  # MMAP_PAGE_ZERO: page 0 mapped, NULL dereferences exploitable
    "0x0040008",  # a bad flag next to an allowed value
    "0x0000001",  # another personality type
    "0xfffffffe",  # everything but the query
    "0xfffdfff7",  # every bit but those of the allowed values
    "0x100040000",  # ADDR_NO_RANDOMIZE in the low 32 bits, all the kernel (and int 0x80) takes
]
# The i386 compat entry (int 0x80) must be filtered just the same.
COMPAT = platform.machine() == "x86_64"


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


@pytest.mark.parametrize("abi", ["64", "32"] if COMPAT else ["64"])
def test_io_uring_is_refused(box, abi: str) -> None:  # type: ignore[no-untyped-def]
    attempt = "io_uring" if abi == "64" else "io_uring32"
    r = box.exec(["escape", attempt])
    assert r.stdout == f"BLOCKED {attempt} EPERM\n".encode(), r


@pytest.mark.parametrize("abi", ["64", "32"] if COMPAT else ["64"])
def test_personality_is_limited_to_dockers_values(box, abi: str) -> None:  # type: ignore[no-untyped-def]
    attempt = "personality" if abi == "64" else "personality32"
    values = PERSONALITY_ALLOWED + PERSONALITY_DENIED
    # One exec for all the values: a container start per value would be slow.
    script = "".join(f"escape {attempt} {v}; " for v in values)
    r = box.exec(["sh", "-c", script])
    got = dict(zip(values, r.stdout.decode().splitlines()))
    want = {v: f"ALLOWED {attempt}" for v in PERSONALITY_ALLOWED}
    want |= {v: f"BLOCKED {attempt} EPERM" for v in PERSONALITY_DENIED}
    assert got == want, r


def test_ptrace_of_a_host_process_is_blocked(box) -> None:  # type: ignore[no-untyped-def]
    r = box.exec(["escape", "ptrace_host", str(os.getpid())])
    assert r.stdout.startswith(b"BLOCKED"), r


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_host_processes_and_other_containers_are_invisible(
    engine: Engine, escape_image: str, userns: bool
) -> None:
    with (
        engine.containers.run(escape_image, ["sleep", "3600"], detach=True, name="alice", userns=userns) as a,
        engine.containers.run(escape_image, ["sleep", "3600"], detach=True, name="bob", userns=userns) as b,
    ):
        a.exec(["sh", "-c", "echo alice-secret > /root/secret"])
        pids = b.exec(["sh", "-c", "ls /proc | grep -E '^[0-9]+$'"]).stdout.split()
        assert len(pids) < 10, f"bob sees foreign processes: {pids}"
        found = b.exec(["sh", "-c", "find / -xdev -name secret; grep -rl alice-secret /root /tmp /etc; true"])
        assert found.stdout.strip() == b"", found
        assert b.exec(["cat", "/root/secret"]).exit_code != 0
        assert a.exec(["cat", "/root/secret"]).stdout == b"alice-secret\n"
