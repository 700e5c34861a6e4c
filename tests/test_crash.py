"""Crash safety: SIGKILL the process that builds, creates, starts, removes or
prunes, at random instants; ``Engine.check()`` repairs what was left half-done,
committed data is never lost, and a full build and run succeed afterwards.

The number of kills per operation is PYLXCORE_KILLS (default 50, the full
count, which CI runs)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylxcore import Engine, Image
from pylxcore.build.bases import tree_digest

KILLS = int(os.environ.get("PYLXCORE_KILLS", "50"))

# Each worker loops forever doing one operation; the test kills it.
WORKERS = {
    "build": """
i = 0
while True:
    i += 1
    e.images.build(Image(f"crash/b:{os.getpid()}-{i}", layers=[f"echo {i} > /a", "echo x > /b", "rm /b"]))
""",
    "create": """
while True:
    e.containers.create("crash/base:1", ["true"])
""",
    "start": """
while True:
    e.containers.create("crash/base:1", ["sleep", "3600"]).start()
""",
    "remove": """
while True:
    c = e.containers.run("crash/base:1", ["sleep", "3600"], detach=True)
    c.exec(["sh", "-c", "echo data > /d"])
    c.remove(force=True)
""",
    "prune": """
i = 0
while True:
    i += 1
    e.images.build(Image("crash/p:1", layers=[f"echo {os.getpid()}-{i} > /p"]))
    e.containers.create("crash/p:1", ["true"])
    e.images.remove("crash/p:1", force=True)
    e.prune()
""",
}

PRELUDE = "import os, sys\nfrom pylxcore import Engine, Image\ne = Engine(root=sys.argv[1])\n"


@pytest.mark.slow
@pytest.mark.parametrize("operation", sorted(WORKERS))
def test_sigkill_at_random_instants(engine: Engine, operation: str) -> None:
    rng = random.Random(f"{operation}-{KILLS}")
    engine.images.build(Image("crash/base:1", layers=["echo base > /base"]))
    # Running, so that prune (which removes stopped containers) must keep it.
    sentinel = engine.containers.run("crash/base:1", ["sleep", "3600"], name="sentinel", detach=True)
    sentinel.exec(["sh", "-c", "echo 'keep me' > /precious"])
    base_layers = engine.images.get("crash/base:1").layer_keys
    digests = {k: tree_digest(engine.store.layer_dir(k) / "fs") for k in base_layers}

    repaired_total = 0
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + WORKERS[operation], str(engine.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # The interpreter and import take ~0.1 s; kill anywhere in the work after.
        time.sleep(0.1 + rng.random() * 0.4)
        if proc.poll() is not None:
            pytest.fail(f"the {operation} worker died on its own: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]

        report = engine.check()
        repaired_total += len(report.repaired)
        assert report.consistent, f"kill {kill}: {report.problems}"
        after = engine.check(repair=False)
        assert after.consistent and not after.problems, f"kill {kill}: still wrong after repair: {after}"
        # Nothing committed was lost or changed.
        assert engine.images.get("crash/base:1").layer_keys == base_layers
        for key, digest in digests.items():
            assert tree_digest(engine.store.layer_dir(key) / "fs") == digest
        assert engine.containers.get("sentinel").exec(["cat", "/precious"]).stdout == b"keep me\n"
        for c in engine.containers.list(all=True):
            c.reload()  # every container left behind is readable

    # The store still works in full.
    engine.images.build(Image("crash/verify:1", base="image:crash/base:1", layers=["echo v > /v"]))
    out = engine.containers.run("crash/verify:1", ["cat", "/base", "/v"], remove=True)
    assert out.stdout == b"base\nv\n"
    print(f"{operation}: {KILLS} kills survived, {repaired_total} repairs")
    for c in engine.containers.list(all=True):
        c.remove(force=True)
    assert engine.check(repair=False).consistent
    assert not [p for p in Path(engine.store.tmp_dir).iterdir()]
