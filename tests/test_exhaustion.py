"""Resource exhaustion: a full disk gives a clear StorageError and leaves a
consistent store; a container that fills its memory or pids limit never makes
the engine hang."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from pylxcore import Engine, Image, Layer, LimitError, Limits, StorageError
from tests.conftest import require_lxc, until


@pytest.fixture
def small_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine whose root is a 24 MB tmpfs: easy to fill."""
    require_lxc()
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "pxtest-small", str(mnt)], check=True)
    try:
        eng = Engine(root=mnt / "root")
        yield eng
        for c in eng.containers.list(all=True):
            c.remove(force=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_during_a_run_step(small_engine: Engine) -> None:
    e = small_engine
    e.images.build(Image("full/base:1", layers=["echo kept > /kept"]))
    layers = set(e.store.layer_keys())
    with pytest.raises(StorageError) as info:
        e.images.build(
            Image("full/big:1", base="image:full/base:1", layers=["dd if=/dev/zero of=/big bs=1M count=64"])
        )
    assert "disk is full" in str(info.value)
    assert set(e.store.layer_keys()) == layers, "no half layer was committed"
    assert list(e.store.tmp_dir.iterdir()) == []
    assert e.check(repair=False).consistent
    # The space is back and the store works.
    assert e.containers.run("full/base:1", ["cat", "/kept"], remove=True).stdout == b"kept\n"


def test_full_disk_during_a_copy(small_engine: Engine, tmp_path: Path) -> None:
    e = small_engine
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "big").write_bytes(b"\0" * (40 << 20))
    with pytest.raises(StorageError):
        e.images.build(Image("full/copy:1", layers=[Layer.copy("big", "/big")]), context=ctx)
    assert list(e.store.tmp_dir.iterdir()) == []
    assert e.check(repair=False).consistent


def test_full_disk_during_a_container_write(small_engine: Engine) -> None:
    e = small_engine
    e.images.build(Image("full/ctr:1"))
    r = e.containers.run(
        "full/ctr:1",
        ["sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=64; echo after"],
        remove=True,
        timeout=60,
    )
    assert r.exit_code == 0 and b"after" in r.stdout
    assert b"No space left" in r.stderr
    assert e.check(repair=False).consistent


def test_memory_and_pids_exhaustion_never_hang_the_engine(engine: Engine, busybox: str) -> None:
    with engine.containers.run(busybox, detach=True, limits=Limits(memory="32M", pids=16)) as c:
        bomb = c.exec(["sh", "-c", "for i in $(seq 64); do sleep 30 & done; wait"], timeout=60)
        assert bomb.exit_code != 0 or b"can't fork" in bomb.stderr or b"Resource" in bomb.stderr
        hog = c.exec(["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"], timeout=60)
        assert hog.exit_code == 137
        assert c.exec(["echo", "alive"], timeout=30).stdout == b"alive\n"
        assert c.stop(timeout=2) is not None


def test_exec_at_the_pids_limit_says_so(engine: Engine, busybox: str) -> None:
    """A fork that fails inside the container is told as its pids limit, not as
    a container that is stopping (liblxc reports both alike)."""
    with engine.containers.run(busybox, ["sleep", "3600"], detach=True, limits=Limits(pids=8)) as c:
        # Exactly up to the limit (init, sleep, sh and 5 sleeps): a shell whose
        # own fork failed would exit, and its reaped process would free a pid.
        bomb = c.exec_stream(["sh", "-c", "for i in 1 2 3 4 5; do sleep 3 & done; wait"])
        until(lambda: (c.stats().pids or 0) >= 8, what="the pids limit to be reached")
        with pytest.raises(LimitError) as info:
            c.exec(["echo", "hi"], timeout=30)
        assert (info.value.limit, info.value.value) == ("pids", 8)
        assert "pids limit (8)" in str(info.value)
        assert b"".join(chunk for _, chunk in bomb) == b""  # (it ends with its sleeps)
        assert bomb.exit_code == 0
        assert c.exec(["echo", "alive"], timeout=30).stdout == b"alive\n"
