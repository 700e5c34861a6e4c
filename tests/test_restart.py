"""Restart policies, kept by the container's supervisor (SPEC.md section 10):
no daemon, and they work after the Python process that started the
container has exited. Docker's rules: on-failure[:N] after a non-zero exit
(at most N times), always / unless-stopped after any end, never after the
user's stop() or kill(); a back-off between starts; on a host's boot,
``start --all-restartable`` brings back always and unless-stopped ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pylxcore import Engine
from pylxcore.errors import SpecError
from pylxcore.spec import validate
from pylxcore.supervisor.policy import Backoff, PolicySpec, should_restart
from tests.conftest import until


def state(engine: Engine, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((engine.store.containers_dir / name / "state.json").read_text())
    return data


# -- the rules, alone ------------------------------------------------------------


def test_restart_policies_are_docker_s() -> None:
    assert validate.restart_policy(None) == "no"
    for text in ("no", "always", "unless-stopped", "on-failure", "on-failure:5"):
        assert validate.restart_policy(text) == text
    assert validate.restart_policy("on-failure:0") == "on-failure"
    for bad in ("yes", "on-failure:", "on-failure:-1", "always:3", "", 3):
        with pytest.raises(SpecError) as info:
            validate.restart_policy(bad)
        assert info.value.key == "restart"
    assert should_restart("on-failure:3", 1, 2, False)
    assert not should_restart("on-failure:3", 1, 3, False)
    assert not should_restart("on-failure", 0, 0, False)
    assert should_restart("on-failure", 1, 1000, False)
    assert should_restart("always", 0, 0, False) and should_restart("unless-stopped", 137, 9, False)
    assert not should_restart("always", 137, 0, True)  # the user stopped it
    assert not should_restart("no", 1, 0, False)


def test_the_back_off_doubles_and_starts_over_after_ten_seconds_of_running() -> None:
    b = Backoff()
    assert [b.next(0.5) for _ in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert b.next(10.0) == 0.1
    assert max(b.next(0) for _ in range(20)) == 60.0


def test_the_policy_spec_reads_what_was_written(tmp_path: os.PathLike[str]) -> None:
    check = ["lxc-attach", "--", "sh", "-c", "a b"]
    spec = PolicySpec(
        "on-failure:2", events="/r/e.log", ctr_id="ab", image="x", name="web", health_argv=check
    )
    spec.health_env = {"PATH": "/bin", "SECRET": "a=b c"}
    spec.timeout = 2.5
    spec.write(str(tmp_path))
    back = PolicySpec.read(str(tmp_path))
    assert [getattr(back, k) for k in PolicySpec.__slots__] == [
        getattr(spec, k) for k in PolicySpec.__slots__
    ]
    assert PolicySpec.read(str(tmp_path) + "/none").restart == "no"


# -- real containers -------------------------------------------------------------


def test_on_failure_3_runs_four_times_then_stays_exited(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sh", "-c", "echo ran; exit 1"], detach=True, restart="on-failure:3")
    assert c.wait(timeout=60) == 1
    c.reload()
    assert (c.state.value, c.exit_code, c.restart_count) == ("exited", 1, 3)
    assert c.logs() == b"ran\n" * 4
    assert c.inspect()["restart_count"] == 3 and c.inspect()["restart_policy"] == "on-failure:3"
    actions = [e.action for e in engine.events(filters={"container": c.name})]
    assert actions == ["create", *["start", "die"] * 4]


def test_on_failure_does_not_restart_a_clean_exit_and_remove_conflicts(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["true"], detach=True, restart="on-failure")
    assert c.wait(timeout=30) == 0 and c.reload().restart_count == 0
    with pytest.raises(SpecError):
        engine.containers.run(busybox, ["true"], detach=True, remove=True, restart="always")
    with pytest.raises(SpecError):
        engine.containers.run(busybox, ["true"], detach=True, restart="sometimes")


_STARTER = """
import sys
from pylxcore import Engine
c = Engine(root=sys.argv[1]).containers.run(sys.argv[2], ["sleep", "3600"], detach=True, restart="always")
print(c.name)
"""


def test_always_comes_back_after_kill_9_from_the_host_not_after_stop(engine: Engine, busybox: str) -> None:
    # Started by a Python process that is gone before anything happens.
    out = subprocess.run([sys.executable, "-c", _STARTER, str(engine.root), busybox],
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    c = engine.containers.get(out.stdout.strip())
    assert c.state.value == "running" and c.restart_count == 0
    first = state(engine, c.name)
    os.kill(int(first["main_pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    until(
        lambda: state(engine, c.name).get("restart_count") == 1 and c.status() == "running", what="a restart"
    )
    again = state(engine, c.name)
    assert again["main_pid"] != first["main_pid"] and again["shim_pid"] == first["shim_pid"]
    assert c.reload().exit_code is None and c.restart_count == 1
    assert c.stop(timeout=5) == 143  # sleep ends on SIGTERM
    time.sleep(1)  # more than the back-off it would wait
    assert c.status() == "exited" and c.restart_count == 1
    # kill() by the user is no failure either.
    c.start()
    c.kill()
    assert c.wait(timeout=10) == 137
    time.sleep(0.5)
    assert c.status() == "exited" and c.restart_count == 0


def test_a_restarting_container_can_be_stopped_and_removed(engine: Engine, busybox: str) -> None:
    # exit 1 every time: it spends most of its life in the back-off.
    c = engine.containers.run(busybox, ["sh", "-c", "exit 3"], detach=True, restart="always")
    until(lambda: c.status() == "restarting" and c.restart_count >= 3, what="restarting")
    assert c.exit_code == 3
    assert [x.name for x in engine.containers.list()] == [c.name]  # (as docker ps lists it)
    c.stop(timeout=5)
    assert c.status() == "exited"
    count = c.restart_count
    time.sleep(0.5)
    assert c.status() == "exited" and c.restart_count == count
    d = engine.containers.run(busybox, ["sh", "-c", "exit 3"], detach=True, restart="always")
    until(lambda: d.status() == "restarting", what="restarting")
    d.remove(force=True)
    assert not engine.containers.exists(d.name)


def test_start_all_restartable_brings_back_what_docker_s_daemon_would(engine: Engine, busybox: str) -> None:
    always = engine.containers.run(busybox, detach=True, restart="always")
    stopped = engine.containers.run(busybox, detach=True, restart="unless-stopped")
    crashed = engine.containers.run(busybox, detach=True, restart="unless-stopped")
    plain = engine.containers.run(busybox, detach=True)
    always.stop(timeout=1)
    stopped.stop(timeout=1)
    plain.stop(timeout=1)
    # A host going down: the supervisor and the container die with no word.
    os.kill(int(state(engine, crashed.name)["shim_pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    engine.check(repair=True)  # (what a boot leaves: nothing of it running)
    assert crashed.status() == "exited"
    started = engine.containers.start_restartable()
    assert sorted(c.name for c in started) == sorted([always.name, crashed.name])
    assert [c.status() for c in (always, stopped, crashed, plain)] == [
        "running",
        "exited",
        "running",
        "exited",
    ]
    assert engine.containers.start_restartable() == []  # nothing more to start


def test_the_command_line_sets_policies_shows_health_and_restores(engine: Engine, busybox: str) -> None:
    env = {**os.environ, "PYLXCORE_ROOT": str(engine.root)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pylxcore", *args], capture_output=True, text=True,
                              env=env, timeout=60)  # fmt: skip

    health = ["--health-cmd", "test -e /etc/passwd", "--health-interval", "200ms"]
    out = cli("run", "-d", "--name", "svc", "--restart", "unless-stopped", *health, busybox)
    assert out.returncode == 0, out.stderr
    until(lambda: "(healthy)" in cli("ps").stdout, timeout=20, what="ps showing (healthy)")
    c = engine.containers.get("svc")
    assert c.inspect()["restart_policy"] == "unless-stopped" and c.health == "healthy"
    assert cli("run", "--restart", "sometimes", busybox).returncode == 125
    # Its supervisor dies with the host; the boot's unit starts it again.
    # As a reboot does: its supervisor, liblxc's monitor and the container's init all die.
    pids = state(engine, "svc")
    for key in ("shim_pid", "lxc_pid", "init_pid"):
        os.kill(int(pids[key]), signal.SIGKILL)  # type: ignore[call-overload]
    for key in ("shim_pid", "lxc_pid", "init_pid"):
        until(lambda key=key: not os.path.exists(f"/proc/{pids[key]}"), timeout=30, what=f"{key}'s end")
    engine.check(repair=True)
    assert c.status() == "exited"
    out = cli("start", "--all-restartable")
    assert (out.returncode, out.stdout) == (0, "svc\n"), out.stderr
    assert c.status() == "running"
    assert cli("stop", "-t", "1", "svc").returncode == 0
    assert cli("start", "--all-restartable").stdout == ""  # stopped by its user: it stays so
