"""Embedding pylxcore in another tool: a tiny test runner that runs each case
in a throwaway container, so no case can see or break another.

Run as root:  .venv/bin/python examples/throwaway_runner.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from pylxcore import Engine, Image, Limits

CASES = {
    "adds": ("echo $((2 + 2))", b"4\n"),
    "sees-no-other-case": ("ls /tmp | wc -l", b"0\n"),
    "leaves-a-mess": ("touch /tmp/mess; echo done", b"done\n"),
    "fails": ("echo oops >&2; exit 1", b""),
}


def main() -> int:
    root = os.environ.get("PYLXCORE_ROOT") or tempfile.mkdtemp(prefix="pylxcore-runner-")
    engine = Engine(root=root)
    engine.images.build(Image("example/runner:1", base="busybox"))
    failed = 0
    for name, (script, expected) in CASES.items():
        result = engine.containers.run(
            "example/runner:1",
            ["sh", "-c", script],
            remove=True,
            timeout=30,
            limits=Limits(memory="32M", pids=32),
        )
        ok = result.exit_code == 0 and result.stdout == expected
        failed += not ok
        detail = "" if ok else f" (exit {result.exit_code}, stderr {result.stderr!r})"
        print(f"{'PASS' if ok else 'FAIL'} {name}{detail}")
    print(f"{len(CASES) - failed} ok, {failed} failing (one is meant to)")
    if not os.environ.get("PYLXCORE_ROOT"):
        shutil.rmtree(root)
    return 0 if failed == 1 else 1  # exactly the case meant to fail fails


if __name__ == "__main__":
    sys.exit(main())
