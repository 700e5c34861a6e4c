"""Options of a long-running container (SPEC.md section 10): ``stop_signal``
and ``stop_timeout`` (what stop() sends first: given, else the image's
StopSignal, else SIGTERM; how long it waits before SIGKILL), ``read_only``
with ``tmpfs``, and the healthcheck run in the container's workdir."""

from __future__ import annotations

import time

import pytest

from pylxcore import Engine, Image
from pylxcore.errors import SpecError
from pylxcore.spec.healthcheck import Healthcheck
from tests.conftest import until

TRAPS = "trap 'echo got USR1; exit 3' USR1; trap 'echo got QUIT; exit 4' QUIT; echo up; sleep 60 & wait"


def _up(c: object) -> None:
    end = time.monotonic() + 20
    while b"up" not in c.logs() and time.monotonic() < end:  # type: ignore[attr-defined]
        time.sleep(0.05)


def test_stop_signal_from_the_image_or_given_and_stop_timeout(engine: Engine) -> None:
    engine.images.build(Image("test/stopsig:1", base="busybox", stop_signal="SIGUSR1"))
    c = engine.containers.run("test/stopsig:1", ["sh", "-c", TRAPS], detach=True)
    _up(c)
    assert c.stop() == 3 and c.logs() == b"up\ngot USR1\n"  # the image's StopSignal
    c = engine.containers.run("test/stopsig:1", ["sh", "-c", TRAPS], detach=True, stop_signal="QUIT")
    _up(c)
    assert c.stop() == 4 and c.logs() == b"up\ngot QUIT\n"  # given: over the image's
    # A process that ignores the signal is killed after stop_timeout, not 10 s.
    c = engine.containers.run(
        "test/stopsig:1", ["sh", "-c", "trap '' USR1; echo up; sleep 60"], detach=True, stop_timeout=1
    )
    _up(c)
    began = time.monotonic()
    assert c.stop() == 137
    assert time.monotonic() - began < 6
    c.remove()
    with pytest.raises(SpecError, match="signal"):
        engine.containers.create("test/stopsig:1", ["true"], stop_signal="SIGNOPE")
    with pytest.raises(SpecError):
        engine.containers.create("test/stopsig:1", ["true"], stop_timeout=-1)


def test_the_healthcheck_runs_in_the_workdir(engine: Engine, busybox: str) -> None:
    # Relative paths: found only from /data (the image's file "base" is there).
    check = Healthcheck(["CMD", "test", "-f", "base"], interval=0.2)
    c = engine.containers.run(busybox, detach=True, workdir="/data", healthcheck=check)
    shell = Healthcheck("test -f base && test $(pwd) = /data", interval=0.2)
    d = engine.containers.run(busybox, detach=True, workdir="/data", healthcheck=shell)
    both = lambda: c.reload().health == "healthy" and d.reload().health == "healthy"  # noqa: E731
    until(both, timeout=20, what="healthy")


def test_read_only_with_tmpfs(engine: Engine, busybox: str) -> None:
    script = "touch /x; touch /run/y && echo run ok; mount | grep ' /run '; echo z >/dev/shm/z && echo shm ok"
    r = engine.containers.run(busybox, ["sh", "-c", script], read_only=True, tmpfs={"/run": "size=16m"},
                              remove=True)  # fmt: skip
    assert r.stderr == b"touch: /x: Read-only file system\n"
    out = r.stdout.decode()
    assert "run ok" in out and "shm ok" in out
    assert "tmpfs on /run type tmpfs (rw,nosuid,nodev,noexec" in out and "size=16384k" in out
    # Without read_only the root is writable; a tmpfs target the image lacks is made.
    r = engine.containers.run(busybox, ["sh", "-c", "touch /x && touch /new/dir/y && echo ok"],
                              tmpfs={"/new/dir": ""}, remove=True)  # fmt: skip
    assert r == (0, b"ok\n", b"")
    for bad in ({"run": ""}, {"/": ""}, {"/run": "size=1m rw"}, {"/run": "a\nb"}, {"/../x": ""}):
        with pytest.raises(SpecError, match="tmpfs"):
            engine.containers.create(busybox, ["true"], tmpfs=bad)
