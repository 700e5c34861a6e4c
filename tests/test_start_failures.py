"""Failures told as failures (SPEC.md §7): when liblxc cannot start a
container, ``run``/``start`` raise a typed error carrying liblxc's reason,
never an ``ExecResult(1)``; and a main process that exits at once with a
non-zero code is never taken for a start that failed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from pylxcore import Engine, Image, LimitError, Limits, LXCError, StorageError
from pylxcore.cli import main
from pylxcore.runtime import launch
from tests.conftest import _our_cgroups, _our_mounts, require_lxc


def assert_liblxc_reason(err: BaseException) -> LXCError:
    """The error comes from liblxc's own: an LXCError with its ERROR lines."""
    cause = err if isinstance(err, LXCError) else err.__cause__
    assert isinstance(cause, LXCError), repr(cause)
    assert cause.operation == "start" and cause.detail, cause
    return cause


def test_a_memory_limit_too_small_to_start_is_a_limit_error(engine: Engine, busybox: str) -> None:
    with pytest.raises(LimitError) as info:
        engine.containers.run(busybox, ["true"], name="tiny", limits=Limits(memory="64"))
    err = info.value
    assert "memory limit 64B is too small to start a container; give at least a few MB" in str(err)
    assert (err.limit, err.value) == ("memory", 64)
    cause = assert_liblxc_reason(err)
    assert "ERROR" in cause.detail and "liblxc:" in str(err)
    assert not engine.containers.exists("tiny"), "run() removes a container that could not start"


@pytest.mark.parametrize("remove", [False, True])
def test_detached_start_failures_raise_and_leave_nothing(engine: Engine, busybox: str, remove: bool) -> None:
    with pytest.raises(LimitError):
        engine.containers.run(
            busybox, ["true"], name="tiny", detach=True, remove=remove, limits=Limits(memory="64")
        )
    assert not engine.containers.exists("tiny")


def test_start_of_a_created_container_that_cannot_start(engine: Engine, busybox: str) -> None:
    c = engine.containers.create(busybox, ["true"], name="tiny", limits=Limits(memory="64"))
    for _ in range(2):  # and again: nothing of the first attempt is in the way
        with pytest.raises(LimitError) as info:
            c.start()
        assert_liblxc_reason(info.value)
        assert c.status() == "created", "it never ran"
        assert c.exit_code is None
    assert c.logs() == b""
    c.remove()  # the fixture checks that no cgroup or mount is left


def test_a_limit_that_makes_liblxc_hang_is_a_limit_error_too(engine: Engine, busybox: str) -> None:
    # With a few kB, the container's first process is OOM-killed while liblxc
    # sets it up, and liblxc 5.0 waits for it forever: the supervisor ends it.
    with pytest.raises(LimitError) as info:
        engine.containers.run(busybox, ["true"], name="tiny", limits=Limits(memory="64k"), timeout=60)
    assert "memory limit 64KiB is too small" in str(info.value)
    assert not engine.containers.exists("tiny")


def test_a_pids_limit_below_two_cannot_start(engine: Engine, busybox: str) -> None:
    # liblxc's init then exits 1 without a word, which would read as `true` failing.
    with pytest.raises(LimitError) as info:
        engine.containers.run(busybox, ["true"], name="one", limits=Limits(pids=1))
    assert (info.value.limit, info.value.value) == ("pids", 1)
    assert not engine.containers.exists("one")
    assert engine.containers.run(busybox, ["true"], limits=Limits(pids=2), remove=True).exit_code == 0


def test_start_failures_without_a_zygote(
    engine: Engine, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same answer from a supervisor started as a fresh interpreter (the
    fallback when no zygote can be had), whether the run waits or not."""
    monkeypatch.setattr(launch, "ask_zygote", lambda containers_dir, ctrdir: None)
    for detach in (False, True):
        with pytest.raises(LimitError):
            engine.containers.run(busybox, ["true"], detach=detach, limits=Limits(memory="64"))
    assert engine.containers.list(all=True) == []
    assert engine.containers.run(busybox, ["sh", "-c", "exit 1"], remove=True).exit_code == 1


def test_fast_exits_are_exit_codes_not_start_failures(engine: Engine, busybox: str) -> None:
    for _ in range(50):
        for cmd in (["false"], ["sh", "-c", "exit 1"]):
            result = engine.containers.run(busybox, cmd, remove=True)
            assert result == (1, b"", b""), (cmd, result)
    c = engine.containers.run(busybox, ["sh", "-c", "exit 7"], detach=True)
    assert c.wait(timeout=30) == 7
    assert c.start().wait(timeout=30) == 7, "and again after a restart"


def test_the_cli_says_why_and_exits_125(
    engine: Engine, busybox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--root", str(engine.root), "run", "--rm", "-m", "64", busybox, "true"])
    err = capsys.readouterr().err
    assert code == 125
    assert err.startswith("pylxcore: error: ") and "too small to start a container" in err, err


@pytest.fixture
def overlay_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine whose store root lies on an overlayfs mount."""
    require_lxc()
    dirs = {d: tmp_path / d for d in ("lower", "upper", "work", "ovl")}
    for d in dirs.values():
        d.mkdir()
    options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    subprocess.run(["mount", "-t", "overlay", "pxtest-ovl", "-o", options, str(dirs["ovl"])], check=True)
    try:
        eng = Engine(root=dirs["ovl"] / "root")
        yield eng
        for c in eng.containers.list(all=True):
            c.remove(force=True)
        eng.close()
        leftovers = _our_cgroups(eng.store.root_id) + _our_mounts(eng.root)
        assert not leftovers, f"left behind: {leftovers}"
    finally:
        subprocess.run(["umount", str(dirs["ovl"])], check=True)


def test_a_store_root_on_overlayfs_is_a_storage_error(overlay_engine: Engine) -> None:
    engine = overlay_engine
    engine.images.build(Image("ovl/busybox:1", base="busybox"))
    with pytest.raises(StorageError) as info:
        engine.containers.run("ovl/busybox:1", ["true"], name="ovl")
    err = info.value
    assert err.path == str(engine.root)
    assert "store root must not be on overlayfs" in str(err)
    assert "overlay" in assert_liblxc_reason(err).detail
    assert not engine.containers.exists("ovl")
    c = engine.containers.create("ovl/busybox:1", ["true"], name="made")
    with pytest.raises(StorageError):
        c.start()
    assert c.status() == "created"
    c.remove()
