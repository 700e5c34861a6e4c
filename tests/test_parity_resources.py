"""``update`` and ``stats`` on real containers: limits changed while a
container runs reach its cgroups at once and outlive a restart; bad values
change nothing; stats stream docker-py's documents with CPU %."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylxcore import Engine, Limits
from pylxcore.errors import InvalidState, LimitError, SpecError
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.statstream import cpu_percent
from tests.test_limits import cgroup_file

REPO = Path(__file__).resolve().parent.parent
BUSY = ["sh", "-c", "while true; do :; done"]


def cli(engine: Engine, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylxcore", "--root", str(engine.store.root), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False)


def limits_in_force(engine: Engine, name: str) -> tuple[str, str, str]:
    """(memory, cpu quota, pids) as the container's cgroups hold them."""
    return (cgroup_file(engine, name, "memory", "memory.limit_in_bytes", "memory.max"),
            cgroup_file(engine, name, "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0],
            cgroup_file(engine, name, "pids", "pids.max", "pids.max"))


def test_update_a_running_container(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, name="up", detach=True, limits=Limits(memory="32M"))
    assert c.update({"memory": "64M", "cpus": 0.5, "pids": 20}) == Limits(memory="64M", cpus=0.5, pids=20)
    assert limits_in_force(engine, "up") == (str(64 << 20), "50000", "20")
    assert c.stats().memory_limit_bytes == 64 << 20
    # The pids limit bites at once: 30 sleepers cannot all start.
    forked = c.exec(["sh", "-c", "for i in $(seq 30); do sleep 5 & done; wait"])
    assert forked.exit_code != 0 or b"fork" in forked.stderr.lower() or b"resource" in forked.stderr.lower()
    # Refused values change nothing, neither the cgroups nor the record.
    with pytest.raises(SpecError, match="limits.pids"):
        c.update({"pids": 0})
    with pytest.raises(LimitError, match="CPUs this host has"):
        c.update(Limits(cpus=1000))
    if host_layout().version("memory") == "v1":  # (v2 takes it, and reclaims or kills: as docker's)
        with pytest.raises(LimitError, match="memory"):
            c.update({"memory": "64k"})  # below what it uses: the kernel refuses
    assert limits_in_force(engine, "up") == (str(64 << 20), "50000", "20")
    assert c.inspect()["limits"] == {"memory": "64M", "cpus": 0.5, "pids": 20}
    # A restart (and a fresh Engine) keeps them: they are in its record and config.
    c.restart(timeout=1)
    assert limits_in_force(engine, "up") == (str(64 << 20), "50000", "20")
    assert Engine(root=engine.root).containers.get("up").inspect()["limits"]["memory"] == "64M"
    # paused too
    c.pause()
    c.update({"memory": "48M"})
    c.unpause()
    assert limits_in_force(engine, "up")[0] == str(48 << 20)


def test_update_a_stopped_container_and_the_cli(engine: Engine, busybox: str) -> None:
    made = cli(engine, "create", "--name", "later", busybox)
    assert made.returncode == 0, made.stderr
    done = cli(engine, "update", "-m", "40M", "--pids-limit", "30", "--cpus", "0.25", "later")
    assert (done.returncode, done.stdout) == (0, "later\n"), done.stderr
    assert cli(engine, "start", "later").returncode == 0
    assert limits_in_force(engine, "later") == (str(40 << 20), "25000", "30")
    template = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"
    shown = cli(engine, "inspect", "-f", template, "later")
    assert shown.stdout == f"{40 << 20} 250000000 30\n"
    bad = cli(engine, "update", "--pids-limit", "lots", "later")
    assert bad.returncode == 1 and "limits.pids" in bad.stderr and "'lots'" in bad.stderr
    none = cli(engine, "update", "later")
    assert none.returncode == 1 and "at least one limit" in none.stderr
    missing = cli(engine, "update", "-m", "64M", "later", "nosuch")
    assert missing.returncode == 1 and missing.stdout == "later\n" and "nosuch" in missing.stderr
    assert limits_in_force(engine, "later")[0] == str(64 << 20)


@pytest.mark.slow
def test_stats_stream_cpu_percent(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sh", "-c", "sleep 1; end=$(($(date +%s) + 3)); "
                                        "while [ $(date +%s) -lt $end ]; do :; done"],
                              name="busy", detach=True, limits=Limits(memory="32M"))
    docs = list(c.stats(stream=True, interval=0.5))  # ends when it does
    assert 3 <= len(docs) <= 12
    first = docs[0]
    assert first["name"] == "/busy" and first["id"] == c.id and cpu_percent(first) == 0.0
    assert first["memory_stats"]["limit"] == 32 << 20 and first["pids_stats"]["current"] >= 1
    busiest = max(cpu_percent(d) for d in docs)
    # A busy shell: a fair share of one CPU at least, even on a busy shared host;
    # at most all of them (its loop forks ``date``, which runs beside it).
    assert 15 <= busiest <= 100 * (os.cpu_count() or 1) + 5, [round(cpu_percent(d)) for d in docs]
    with pytest.raises(InvalidState):
        c.stats(stream=True)

    # The CLI: one reading with --no-stream, a stream that ends with its containers.
    engine.containers.run(busybox, BUSY, name="spin", detach=True)
    once = cli(engine, "stats", "--no-stream", "--format", "json", "spin")
    (item,) = [json.loads(line) for line in once.stdout.splitlines()]
    assert item["name"] == "spin" and item["cpu_percent"] > 10, item
    templated = cli(engine, "stats", "--no-stream", "--format",
                    "table {{.Name}}\t{{.CPUPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
    header, row = templated.stdout.splitlines()
    assert re.split(r" {2,}", header) == ["NAME", "CPU %", "NET I/O", "BLOCK I/O", "PIDS"], header
    assert row.split()[0] == "spin" and row.split()[2:5] == ["0B", "/", "0B"], row  # (no network)
    engine.containers.run(busybox, ["sleep", "2"], name="short", detach=True)
    started = time.monotonic()
    streamed = cli(engine, "stats", "--format", "{{.Name}} {{.PIDs}}", "short", timeout=30)
    assert streamed.returncode == 0 and time.monotonic() - started < 15
    lines = streamed.stdout.splitlines()
    # (init and sleep; 0 in a reading taken while it ends)
    assert len(lines) >= 2 and lines[0] == "short 2", lines
    assert set(lines) <= {"short 0", "short 1", "short 2"}, lines


def test_with_limits_replaces_only_limit_lines() -> None:
    from pylxcore.runtime.limits import CgroupLayout
    from pylxcore.runtime.lxcconfig import RunConfig, render, with_limits

    for version in ("v1", "v2"):
        layout = CgroupLayout(controllers={c: (version, "/x") for c in ("memory", "cpu", "pids", "devices")},
                              memsw=True, online_cpus=frozenset({0, 1}))
        old, new = Limits(memory="32M", pids=9), Limits(memory="64M", cpus=0.5)
        config = render(RunConfig(name="c", rootfs="/r", cgroup_dir="g", limits=old), layout)
        updated = with_limits(config, new, layout)
        assert updated == with_limits(updated, new, layout)  # (idempotent)
        fresh = render(RunConfig(name="c", rootfs="/r", cgroup_dir="g", limits=new), layout)
        assert sorted(updated.splitlines()) == sorted(fresh.splitlines()), version
        assert "devices" in updated and "pids.max" not in updated
    with pytest.raises(LimitError, match="CPUs this host has"):
        with_limits(config, Limits(cpus=3), layout)
