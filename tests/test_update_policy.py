"""``update`` beyond changing a limit, on real containers: removing one
(``pids=-1``, ``memory_swap=-1``: the cgroup back to no limit, the record and
config too, so a restart keeps it), a new restart policy that the running
supervisor follows from the next exit on; and exec streams that are dropped
unread, which must not keep a container from stopping."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from pylxcore import Engine, Limits
from pylxcore.errors import InvalidState, SpecError
from pylxcore.runtime.limits import host_layout
from tests.test_limits import cgroup_file
from tests.test_parity_resources import cli


def _wait_for(check: object, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_update_removes_the_pids_limit(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, name="unl", detach=True, limits=Limits(memory="32M", pids=20))
    assert cgroup_file(engine, "unl", "pids", "pids.max", "pids.max") == "20"
    assert c.update({"pids": -1}) == Limits(memory="32M")
    assert cgroup_file(engine, "unl", "pids", "pids.max", "pids.max") == "max"
    assert "pids.max" not in (c.dir / "config").read_text()
    assert engine.containers.get("unl").inspect()["limits"] == {"memory": "32M"}
    c.restart(timeout=1)
    assert cgroup_file(engine, "unl", "pids", "pids.max", "pids.max") == "max"
    assert cgroup_file(engine, "unl", "memory", "memory.limit_in_bytes", "memory.max") == str(32 << 20)
    # -1 is the only way below 1; and set again, it bites again.
    with pytest.raises(SpecError, match="-1 \\(no limit\\) or an integer"):
        c.update({"pids": 0})
    shown = cli(engine, "update", "--pids-limit", "30", "unl")
    assert shown.returncode == 0, shown.stderr
    assert cgroup_file(engine, "unl", "pids", "pids.max", "pids.max") == "30"
    removed = cli(engine, "update", "--pids-limit", "-1", "unl")
    assert removed.returncode == 0, removed.stderr
    assert cgroup_file(engine, "unl", "pids", "pids.max", "pids.max") == "max"


def test_update_removes_the_swap_limit(engine: Engine, busybox: str) -> None:
    if not host_layout().memsw:
        pytest.fail("this host has no swap accounting (memory.memsw.*): memory_swap cannot be tested")
    c = engine.containers.run(busybox, name="swp", detach=True,
                              limits=Limits(memory="32M", memory_swap="64M"))
    v1 = host_layout().version("memory") == "v1"
    swap_file = ("memory.memsw.limit_in_bytes", "memory.swap.max")
    assert cgroup_file(engine, "swp", "memory", *swap_file) == str((64 if v1 else 32) << 20)
    c.update({"memory_swap": -1})
    unlimited = cgroup_file(engine, "swp", "memory", *swap_file)
    assert unlimited == "max" or int(unlimited) > 1 << 60, unlimited  # (v1 shows its max as a number)
    c.restart(timeout=1)
    assert cgroup_file(engine, "swp", "memory", *swap_file) == unlimited
    assert c.inspect()["limits"] == {"memory": "32M", "memory_swap": -1}
    shown = cli(engine, "inspect", "-f", "{{json .HostConfig.MemorySwap}}", "swp")
    assert shown.stdout == "-1\n"


def test_update_restart_policy_reaches_the_running_supervisor(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sh", "-c", "sleep 1; exit 3"], name="pol", detach=True)
    assert c.update(restart="always") == Limits()
    # Its next exit restarts it, as docker's restart manager does after an update.
    assert _wait_for(lambda: engine.containers.get("pol").restart_count >= 1), c.inspect()
    assert engine.containers.get("pol").inspect()["restart_policy"] == "always"
    c.update(restart="no")
    assert c.wait(timeout=20) == 3
    count = engine.containers.get("pol").restart_count
    time.sleep(1.5)  # (no further start: the end stands)
    again = engine.containers.get("pol")
    assert (again.status(), again.restart_count) == ("exited", count)
    # An exited container takes one too, for its next start (CLI: docker's spelling).
    done = cli(engine, "update", "--restart", "on-failure:2", "pol")
    assert (done.returncode, done.stdout) == (0, "pol\n"), done.stderr
    shown = cli(engine, "inspect", "-f", "{{json .HostConfig.RestartPolicy}}", "pol")
    assert shown.stdout == '{"MaximumRetryCount":2,"Name":"on-failure"}\n' or \
        shown.stdout == '{"Name":"on-failure","MaximumRetryCount":2}\n', shown.stdout
    bad = cli(engine, "update", "--restart", "sometimes", "pol")
    assert bad.returncode == 1 and "'sometimes'" in bad.stderr
    with pytest.raises(SpecError, match="limits or a restart policy"):
        c.update()


def test_update_restart_refused_for_a_container_removed_at_exit(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, name="gone", detach=True, remove=True)
    with pytest.raises(InvalidState, match="removed when it exits"):
        c.update({"pids": 50}, restart="always")
    assert cgroup_file(engine, "gone", "pids", "pids.max", "pids.max") == "max"  # (nothing changed)
    c.update(restart="no")  # (docker takes "no")


def test_dropped_exec_stream_does_not_hold_up_remove(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, name="drop", detach=True)
    stream = c.exec_stream(["sh", "-c", "echo unread"])
    del stream
    gc.collect()
    kept = c.exec_stream(["sh", "-c", "exit 4"])  # kept, never iterated
    with c.exec_stream(["sh", "-c", "sleep 0.5; touch /not-killed"]) as left:
        pass
    assert left.wait() == 137  # the end of the block ended it
    left.close()  # (idempotent)
    assert c.exec(["ls", "/not-killed"]).exit_code != 0
    time.sleep(0.3)
    began = time.monotonic()
    c.remove(force=True)
    took = time.monotonic() - began
    # A hang check, not a speed claim: an unreaped exec kept it for 30 s and failed.
    assert took < 10, f"remove(force=True) took {took:.1f}s"
    assert kept.wait() == 4


def test_exec_stream_closed_while_running(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, name="run", detach=True)
    # Left halfway through, then closed: a command that keeps writing is killed
    # (137, not whatever the closed pipe would have done to it: SIGPIPE's 141).
    talker = c.exec_stream(["sh", "-c", "while true; do echo x; done"])
    assert next(iter(talker))[0] == "stdout"
    talker.close()
    assert talker.wait() == 137
    # Closed by another thread while one reads it: the reader sees the end.
    chunks: list[bytes] = []
    reading = c.exec_stream(["sh", "-c", "echo begun; sleep 30"])
    reader = threading.Thread(target=lambda: chunks.extend(chunk for _, chunk in reading))
    reader.start()
    assert _wait_for(lambda: chunks)
    reading.close()
    reader.join(timeout=10)
    assert not reader.is_alive() and reading.exit_code == 137 and chunks == [b"begun\n"]
    reading.close()  # (after the reader: now its descriptors close)
    with c.exec_stream(["sh", "-c", "echo done"]) as quick:
        assert list(quick) == [("stdout", b"done\n")]
    assert quick.exit_code == 0 and quick.wait() == 0  # (ended before the block did)
    began = time.monotonic()
    assert c.stop(timeout=1) is not None
    assert time.monotonic() - began < 10
