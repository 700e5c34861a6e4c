"""Limits bite: a memory hog is OOM-killed (exit 137, oom_killed=True), a fork
bomb hits its pids limit and the container stays manageable, and a busy loop
under cpus=0.5 gets about half a CPU.

Run as root:  .venv/bin/python examples/limits_and_oom.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from pylxcore import Engine, Image, Limits


def main() -> int:
    root = os.environ.get("PYLXCORE_ROOT") or tempfile.mkdtemp(prefix="pylxcore-limits-")
    engine = Engine(root=root)
    engine.images.build(Image("example/limits:1", base="busybox"))

    hog = engine.containers.run(
        "example/limits:1",
        ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"],
        limits=Limits(memory="32M", memory_swap="32M"),
        remove=True,
    )
    print(f"memory hog: exit code {hog.exit_code}")

    with engine.containers.run(
        "example/limits:1", ["sleep", "3600"], detach=True, limits=Limits(pids=20, cpus=0.5)
    ) as c:
        bomb = c.exec(["sh", "-c", "for i in $(seq 100); do sleep 5 & done 2>&1 | tail -1; wait"], timeout=30)
        print(f"fork loop under pids=20: exit {bomb.exit_code}, pids now {c.stats().pids}")
        print(f"still manageable: {c.exec(['echo', 'yes']).stdout.decode().strip()}")
        before = c.stats().cpu_seconds or 0.0
        t0 = time.monotonic()
        c.exec(["sh", "-c", "timeout 2 sh -c 'while :; do :; done'"])
        share = ((c.stats().cpu_seconds or 0.0) - before) / (time.monotonic() - t0)
        print(f"busy loop under cpus=0.5: {share:.2f} of a CPU")

    oom = engine.containers.run(
        "example/limits:1",
        ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"],
        limits=Limits(memory="32M", memory_swap="32M"),
        detach=True,
    )
    oom.wait(timeout=60)
    print(f"detached hog: exit {oom.exit_code}, oom_killed={oom.oom_killed}")
    oom.remove()
    if not os.environ.get("PYLXCORE_ROOT"):
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
