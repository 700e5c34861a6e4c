"""Limits on real liblxc (SPEC.md section 3, "Limits"): each limit really
bites, the container stays manageable when it does, and a limit the host
cannot enforce raises LimitError instead of silently doing nothing.

CPU figures come from the container's own cgroup accounting, with wide
tolerances: this checks that a limit is in force, not the scheduler's accuracy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pylxcore import Engine, Limits
from pylxcore.errors import LimitError
from pylxcore.runtime.limits import host_layout
from tests.conftest import missing, until

SLEEPER = ["sleep", "3600"]
BUSY = ["sh", "-c", "while true; do :; done"]


def cgroup_file(engine: Engine, name: str, controller: str, v1: str, v2: str) -> str:
    version, base = host_layout().controllers[controller]
    path = Path(base) / f"pylxcore-{engine.store.root_id}-{name}" / (v1 if version == "v1" else v2)
    return path.read_text().strip()


def test_memory_limit_oom_kills_and_is_reported(engine: Engine, busybox: str) -> None:
    # One shell doubling a string: its own memory grows until the kernel kills it.
    c = engine.containers.run(
        busybox, ["sh", "-c", "x=a; while true; do x=$x$x; done"], detach=True, limits=Limits(memory="32M")
    )
    assert c.wait(timeout=120) == 137
    assert c.oom_killed is True
    assert c.inspect()["oom_killed"] is True
    # it survives a fresh read of the state, as the supervisor recorded it
    assert engine.containers.get(c.name).oom_killed is True
    c.remove()

    # The same shape without the limit, stopped by hand: 137 alone is no OOM.
    c = engine.containers.run(busybox, SLEEPER, detach=True, limits=Limits(memory="32M"))
    assert c.stats().memory_limit_bytes == 32 * 1024 * 1024
    assert cgroup_file(engine, c.name, "memory", "memory.limit_in_bytes", "memory.max") == str(
        32 * 1024 * 1024
    )
    c.kill("SIGKILL")
    assert c.wait(timeout=30) == 137
    assert c.oom_killed is False
    # a restarted container forgets the old OOM record
    c.start()
    c.stop(timeout=5)
    assert c.oom_killed is False
    c.remove()


def test_memory_limit_in_exec_keeps_the_container_alive(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True, limits=Limits(memory="32M"))
    r = c.exec(["sh", "-c", "x=a; while true; do x=$x$x; done"], timeout=120)
    assert r.exit_code == 137
    assert c.status() == "running"  # only the hog died
    assert c.exec(["echo", "ok"]).stdout == b"ok\n"
    c.remove(force=True)


def test_pids_limit_stops_a_fork_loop_and_the_container_stays_manageable(
    engine: Engine, busybox: str
) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True, limits=Limits(pids=20))
    assert cgroup_file(engine, c.name, "pids", "pids.max", "pids.max") == "20"
    # 60 short-lived background children: many more than fit.
    r = c.exec(["sh", "-c", "for i in $(seq 1 60); do sleep 3 & done; echo looped"], timeout=60)
    assert b"fork" in r.stderr.lower() or b"resource temporarily unavailable" in r.stderr.lower(), r
    stats = c.stats()
    assert stats.pids is not None and stats.pids <= 20
    events = cgroup_file(engine, c.name, "pids", "pids.events", "pids.events")
    assert int(events.split()[-1]) > 0, events  # the kernel refused forks at pids.max
    # Once the children are gone, the container is usable again.
    until(lambda: (c.stats().pids or 0) <= 3, timeout=60, what="the children to exit")
    assert c.exec(["echo", "ok"]).stdout == b"ok\n"

    # Fill it up with children that do not go away: stop still works from outside.
    # (their output goes elsewhere: exec returns when its output pipes close)
    c.exec(["sh", "-c", "for i in $(seq 1 60); do sleep 3600 >/dev/null 2>&1 & done"], timeout=60)
    assert (c.stats().pids or 0) >= 15
    assert c.stop(timeout=5) is not None
    assert c.status() == "exited"
    c.remove()


def test_cpus_limit_holds_a_busy_loop_to_about_half_a_cpu(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, BUSY, detach=True, limits=Limits(cpus=0.5))
    assert cgroup_file(engine, c.name, "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0] == "50000"
    time.sleep(0.3)  # let it get going
    s1, t1 = c.stats().cpu_seconds, time.monotonic()
    time.sleep(2)
    s2, t2 = c.stats().cpu_seconds, time.monotonic()
    assert s1 is not None and s2 is not None
    share = (s2 - s1) / (t2 - t1)
    assert 0.3 <= share <= 0.7, f"a busy loop under cpus=0.5 used {share:.2f} CPUs"
    c.remove(force=True)


def test_cpuset_confines_to_cpu_0(engine: Engine, busybox: str) -> None:
    if 0 not in os.sched_getaffinity(0) or len(os.sched_getaffinity(0)) < 2:
        missing("needs CPU 0 and at least one other CPU (CI machines have 2)")
    c = engine.containers.run(busybox, SLEEPER, detach=True, limits=Limits(cpuset="0"))
    assert cgroup_file(engine, c.name, "cpuset", "cpuset.cpus", "cpuset.cpus") == "0"
    r = c.exec(["grep", "Cpus_allowed_list", "/proc/self/status"])
    assert r.stdout.split() == [b"Cpus_allowed_list:", b"0"]
    r = c.exec(["grep", "Cpus_allowed_list", "/proc/2/status"])  # the main process too
    assert r.stdout.split() == [b"Cpus_allowed_list:", b"0"]
    c.remove(force=True)
    # and without the limit, more than CPU 0: the check above can tell them apart
    out = engine.containers.run(busybox, ["grep", "Cpus_allowed_list", "/proc/self/status"], remove=True)
    assert out.stdout.split()[-1] != b"0"


@pytest.mark.parametrize(
    "limits, field",
    [
        (Limits(cpuset="99"), "cpuset"),
        (Limits(cpuset="0,99"), "cpuset"),
        (Limits(cpus=float(len(os.sched_getaffinity(0)) + 1)), "cpus"),
    ],
)
def test_a_limit_the_host_cannot_enforce_raises(
    engine: Engine, busybox: str, limits: Limits, field: str
) -> None:
    with pytest.raises(LimitError) as info:
        engine.containers.run(busybox, ["true"], limits=limits, name="never")
    assert info.value.limit == field
    assert not engine.containers.exists("never")
    assert os.listdir(engine.store.containers_dir) == []
    with pytest.raises(LimitError):
        engine.containers.create(busybox, ["true"], limits=limits)
    assert os.listdir(engine.store.containers_dir) == []


def test_memory_swap_without_accounting_raises(engine: Engine, busybox: str) -> None:
    if host_layout().memsw:
        # Swap accounting is there: the limit is written and enforced.
        c = engine.containers.run(
            busybox, SLEEPER, detach=True, limits=Limits(memory="32M", memory_swap="64M")
        )
        assert cgroup_file(engine, c.name, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max") in (
            str(64 << 20),
            str(32 << 20),
        )
        c.remove(force=True)
    else:
        with pytest.raises(LimitError):
            engine.containers.run(busybox, ["true"], limits=Limits(memory="32M", memory_swap="64M"))


def test_image_limits_are_defaults_that_run_overrides(engine: Engine) -> None:
    from pylxcore import Image

    engine.images.build(
        Image("lim:1", base="busybox", cmd=["sleep", "3600"], limits=Limits(memory="48M", pids=30))
    )
    c = engine.containers.run("lim:1", detach=True)
    assert c.stats().memory_limit_bytes == 48 << 20
    assert cgroup_file(engine, c.name, "pids", "pids.max", "pids.max") == "30"
    c.remove(force=True)
    c = engine.containers.run("lim:1", detach=True, limits=Limits(memory="24M"))
    assert c.stats().memory_limit_bytes == 24 << 20
    assert cgroup_file(engine, c.name, "pids", "pids.max", "pids.max") == "30"
    c.remove(force=True)
