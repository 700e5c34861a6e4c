"""Healthchecks, run by the container's supervisor in the container with
Docker's rules (SPEC.md section 10): "starting" until the first pass or
``retries`` failures in a row, failures within the start period not
counted, a check past its timeout killed and failed; the last results kept
for inspect; each change of status an event."""

from __future__ import annotations

import json
import time

import pytest

from pylxcore import Engine
from pylxcore.errors import SpecError
from pylxcore.spec.healthcheck import Healthcheck
from pylxcore.supervisor.policy import PolicySpec
from tests.conftest import until


def statuses(engine: Engine, name: str) -> list[str]:
    return [e.action for e in engine.events(filters={"container": name, "event": "health_status"})]


def test_a_check_that_fails_until_a_file_exists_goes_starting_unhealthy_healthy(
    engine: Engine, busybox: str
) -> None:
    check = Healthcheck(["CMD", "sh", "-c", 'echo checked; test -n "$SECRET" && test -e /ok'],
                        interval=0.2, retries=2)  # fmt: skip
    c = engine.containers.run(busybox, detach=True, healthcheck=check, env={"SECRET": "s3cret"})
    # The check gets the container's variables, never on a command line (host users read those).
    assert not any("s3cret" in arg for arg in PolicySpec.read(str(c.dir)).health_argv)
    assert c.health == "starting"
    until(lambda: c.reload().health == "unhealthy", timeout=20, what="unhealthy")
    record = c.inspect()["health"]
    assert record["status"] == "unhealthy" and record["failing_streak"] >= 2
    assert [r["exit_code"] for r in record["log"]][-2:] == [1, 1]
    assert record["log"][-1]["output"] == "checked\n"
    assert c.state.value == "running"  # (unhealthy is no reason to stop, as in Docker)
    c.exec(["touch", "/ok"])
    until(lambda: c.reload().health == "healthy", timeout=20, what="healthy")
    record = c.inspect()["health"]
    assert record["failing_streak"] == 0 and record["log"][-1]["exit_code"] == 0
    assert 1 <= len(record["log"]) <= 5
    assert statuses(engine, c.name) == ["health_status: unhealthy", "health_status: healthy"]


def test_the_start_period_forgives_and_a_timeout_fails(engine: Engine, busybox: str) -> None:
    # Failing, but within its start period: still starting.
    slow = Healthcheck("false", interval=0.2, retries=1, start_period=60)
    c = engine.containers.run(busybox, detach=True, healthcheck=slow)
    until(lambda: len(c.inspect()["health"]["log"]) >= 3, timeout=20, what="three checks")
    assert c.reload().health == "starting"
    # A check that hangs is killed after its timeout and counts as a failure.
    hung = Healthcheck("sleep 30", interval=0.2, timeout=0.3, retries=1)
    d = engine.containers.run(busybox, detach=True, healthcheck=hung)
    began = time.monotonic()
    until(lambda: d.reload().health == "unhealthy", timeout=20, what="unhealthy")
    assert time.monotonic() - began < 10
    last = d.inspect()["health"]["log"][-1]
    assert last["exit_code"] == -1 and "timeout" in last["output"]

    # The killed check left nothing behind in the container.
    def check_gone() -> bool:
        listing = d.exec(["ps", "-o", "args"]).stdout
        assert b"sleep 3600" in listing  # (the main process: ps lists them all)
        return b"sleep 30\n" not in listing

    until(check_gone, timeout=10, what="the check gone")


def test_no_healthcheck_is_none_and_bad_ones_are_refused(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, detach=True)
    assert c.health is None and c.inspect()["health"] is None
    d = engine.containers.run(busybox, detach=True, healthcheck=Healthcheck(["NONE"]))
    assert d.health is None
    with pytest.raises(SpecError):
        Healthcheck("true", interval="soon")
    with pytest.raises(TypeError):
        engine.containers.run(busybox, detach=True, healthcheck="true")  # type: ignore[arg-type]


def _private_kb(pid: int) -> int:
    """Memory only this process holds (the zygote's pages it shares are not counted)."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return sum(int(line.split()[1]) for line in fh if line.startswith("Private_"))


def test_a_supervisor_checking_health_and_restarting_stays_small(engine: Engine, busybox: str) -> None:
    # The budget is 2 MB per idle container (bench/ fleet: PSS of the
    # supervisor). Its own pages alone, after checks and a restart, must fit
    # well within: what it shares with the zygote and its siblings is split
    # among them.
    check = Healthcheck("test -e /etc/passwd", interval=0.1)
    c = engine.containers.run(busybox, ["sh", "-c", "sleep 1; exit 1"], detach=True, restart="always",
                              healthcheck=check)  # fmt: skip
    seen: list[tuple[str, int, str | None]] = []

    def restarted_and_healthy() -> bool:
        c.reload()
        now = (c.state.value, c.restart_count, c.health)
        if not seen or seen[-1] != now:
            seen.append(now)
        return c.restart_count >= 1 and c.health == "healthy"

    # (On a timeout, what it went through says which part did not happen.)
    def what() -> str:
        events = [e.action for e in engine.events(filters={"container": c.name})]
        return (f"a restart and a pass; seen {seen[-12:]}, health {c.inspect()['health']},"
                f" events {events[-12:]}, logs {c.logs()[-500:]!r}")  # fmt: skip

    until(restarted_and_healthy, timeout=30, what=what)
    time.sleep(1)
    shim = int(json.loads((c.dir / "state.json").read_text())["shim_pid"])
    assert _private_kb(shim) < 2048
