"""Concurrency and leaks: several processes on one root for a minute, and a
thousand run/remove cycles, leave a consistent store and nothing behind.

PYLXCORE_SOAK_SECONDS (default 60) and PYLXCORE_LEAK_CYCLES (default 1000)
set the lengths; CI runs the defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pylxcore import Engine, Image

SECONDS = float(os.environ.get("PYLXCORE_SOAK_SECONDS", "60"))
CYCLES = int(os.environ.get("PYLXCORE_LEAK_CYCLES", "1000"))

WORKER = """
import json, os, random, sys, time, traceback
from pylxcore import Engine, Image, Conflict, NotFound
e = Engine(root=sys.argv[1])
rng = random.Random(int(sys.argv[2]))
deadline = time.monotonic() + float(sys.argv[3])
counts = {}
def image(n):
    # Overlapping images: they share a base and their first layers.
    layers = ["echo shared > /s"] + [f"echo {i} > /l{i}" for i in range(n)]
    return Image(f"soak/img:{n}", layers=layers, cmd=["sleep", "3600"])
while time.monotonic() < deadline:
    op = rng.choice(["build", "build", "run", "lifecycle", "lifecycle", "exec", "prune", "rmi"])
    try:
        if op == "build":
            e.images.build(image(rng.randint(0, 3)))
        elif op == "run":
            r = e.containers.run(f"soak/img:{rng.randint(0, 3)}", ["cat", "/s"], remove=True)
            assert r.exit_code == 0 and r.stdout == b"shared\\n", r
        elif op == "lifecycle":
            c = e.containers.run(f"soak/img:{rng.randint(0, 3)}", detach=True)
            assert c.exec(["cat", "/s"]).stdout == b"shared\\n"
            c.stop(timeout=1)
            c.remove()
        elif op == "exec":
            for c in e.containers.list():
                r = c.exec(["true"], timeout=10)
                # 137/143: another worker stopped that container meanwhile, and
                # an exec ends with its container (like Docker's).
                assert r.exit_code in (0, 137, 143), r
        elif op == "prune":
            e.prune()
        elif op == "rmi":
            e.images.remove(f"soak/img:{rng.randint(0, 3)}")
        counts[op] = counts.get(op, 0) + 1
    except (Conflict, NotFound) as err:
        counts["expected-" + type(err).__name__] = counts.get("expected-" + type(err).__name__, 0) + 1
    except Exception:
        # InvalidState is expected too when another worker stopped/removed the container meanwhile.
        etype = sys.exc_info()[0].__name__
        if etype == "InvalidState":
            counts["expected-InvalidState"] = counts.get("expected-InvalidState", 0) + 1
            continue
        traceback.print_exc()
        sys.exit(1)
print(json.dumps(counts))
"""


@pytest.mark.slow
def test_four_processes_share_one_root(engine: Engine) -> None:
    engine.images.build(Image("soak/img:0", layers=["echo shared > /s"], cmd=["sleep", "3600"]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(engine.root), str(seed), str(SECONDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    results = [p.communicate(timeout=SECONDS + 300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, f"a worker failed:\n{err}"
    counts = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    print(f"{sum(sum(c.values()) for c in counts)} operations in {SECONDS:.0f}s by 4 processes: {counts}")
    report = engine.check(repair=False)
    assert report.consistent, report.problems
    for c in engine.containers.list(all=True):
        c.remove(force=True)
    engine.prune()
    assert engine.check(repair=False).consistent
    assert list(engine.store.tmp_dir.iterdir()) == []


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _netdevs() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _processes_of(root: Path) -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmd:
            out.append(cmd)
    return out


@pytest.mark.slow
def test_a_thousand_run_remove_cycles_leak_nothing(engine: Engine) -> None:
    engine.images.build(Image("leak/img:1"))
    engine.containers.run("leak/img:1", ["true"], remove=True)  # warm up: lazy imports open their files
    fds, netdevs = _fds(), _netdevs()
    for i in range(CYCLES):
        r = engine.containers.run("leak/img:1", ["sh", "-c", f"echo {i}"], remove=True)
        assert r.stdout == f"{i}\n".encode()
    assert _fds() == fds, "file descriptors leaked in the test process"
    assert _netdevs() == netdevs, "network devices left behind"
    engine.close()  # the zygote that forked the supervisors: it alone may outlive the runs
    assert _processes_of(engine.root) == []
    assert list(engine.store.containers_dir.iterdir()) == []
    assert list(engine.store.tmp_dir.iterdir()) == []
    assert engine.check(repair=False).consistent
    print(f"{CYCLES} run/remove cycles: no fd, netdev, process, dir, mount or cgroup left")
