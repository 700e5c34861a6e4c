"""Shared fixtures. Tests that need LXC use the ``engine`` fixture (or mark
``needs_lxc``): without LXC they skip on a developer's machine and FAIL under
CI=true, never skip there."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import pytest

from pylxcore import Engine, Image
from pylxcore.runtime.liblxc import available

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(why: str) -> NoReturn:
    """A test's requirement is missing: FAIL under CI=true, skip only on a
    developer's machine. The one place a test may skip."""
    if IN_CI:
        pytest.fail(f"{why}: required under CI=true")
    pytest.skip(why)  # only off CI: under CI this failed above


def require_lxc() -> None:
    why = available()
    if why is not None:
        missing(f"needs LXC: {why}")


def require_docker() -> None:
    """The Docker 20.10 peer's programs (tests/peers.py) must be installed."""
    from tests.peers import docker_missing

    why = docker_missing()
    if why is not None:
        missing(why)


@pytest.fixture(autouse=True, scope="session")
def _command_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's ``pylxcore`` commands use warm command servers of its own
    (cli/warm.py), in a dir of its own; at the end they are stopped by pid."""
    from pylxcore.cli.warm import DIR_ENV

    base = tmp_path_factory.mktemp("warm")
    os.environ[DIR_ENV] = str(base)
    yield
    stop_command_servers(base)


@pytest.fixture(autouse=True, scope="session")
def _host_ruleset_unchanged() -> Iterator[None]:
    """The host's own nftables ruleset is byte-identical after the suite to
    what it was before, pylxcore's tables (``pylxcore_*``) aside: the library
    touches no one else's rules (SPEC.md section 12)."""
    import shutil

    from tests.netutil import ruleset_outside

    if shutil.which("nft") is None:
        yield  # (no nftables here: nothing the suite could have changed through it)
        return
    before = ruleset_outside()
    yield
    after = ruleset_outside()
    changed = f"the host's nft ruleset changed during the suite:\n--- before\n{before}\n--- after\n{after}"
    assert after == before, changed


def stop_command_servers(base: Path) -> None:
    """Stop the command servers listening in ``base``, by pid."""
    from pylxcore.cli.warm import stop_servers

    stop_servers(str(base))


def _our_cgroups(root_id: str) -> list[str]:
    """Our cgroups in every hierarchy (liblxc makes them under pid 1's cgroup)."""
    from pylxcore.runtime.limits import host_layout

    out = []
    for base in host_layout().all_dirs:
        try:
            names = os.listdir(base)
        except OSError:
            continue
        out += [os.path.join(base, n) for n in names if n.startswith(f"pylxcore-{root_id}-")]
    return out


def _our_mounts(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line for line in fh if str(root) in line]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a store root of the test's own; afterwards every container
    is removed and nothing of it may remain (mounts, cgroups, processes)."""
    require_lxc()
    eng = Engine(root=tmp_path / "pxroot")
    yield eng
    for c in eng.containers.list(all=True):
        c.remove(force=True)
    if (eng.root / "networks").is_dir():
        eng.networks.prune()  # their bridges, rules and DNS servers are on the host
    eng.close()
    leftovers = _our_cgroups(eng.store.root_id) + _our_mounts(eng.root)
    assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture
def busybox(engine: Engine) -> str:
    """A small image "test/busybox:1" with a few files, built in the engine."""
    engine.images.build(
        Image(
            "test/busybox:1",
            base="busybox",
            layers=["mkdir -p /data && echo base > /data/base"],
            cmd=["sleep", "3600"],
        )
    )
    return "test/busybox:1"


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def until(
    predicate: Callable[[], object], timeout: float = 30, what: str | Callable[[], str] = "condition"
) -> object:
    """Poll ``predicate`` until it is truthy; fail (not hang) after ``timeout``
    s, saying ``what`` was awaited (a callable: asked only then, so it can
    describe what was seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(0.02)
