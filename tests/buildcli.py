"""``pylxcore build`` as a real process, telling whether its record answered it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

# Runs the command line like the `pylxcore` script, in this process (no
# command server: PYLXCORE_WARM=0), then tells on stderr whether the command
# line's modules were loaded (they are for every real build).
PROBE = """
import os, sys
os.environ["PYLXCORE_WARM"] = "0"
sys.argv = ["pylxcore", *sys.argv[1:]]
from pylxcore.__main__ import main
code = main()
print("PATH=" + ("real" if "pylxcore.cli.dispatch" in sys.modules else "replay"), file=sys.stderr)
sys.exit(code)
"""


class Build(NamedTuple):
    code: int
    out: str
    err: str
    path: str  # "real" or "replay"
    image_id: str  # what ``name`` names in the store afterwards


def cli_build(
    root: Path, *args: str, name: str, cwd: Path | None = None, replay: bool = True, check: bool = True
) -> Build:
    """``pylxcore --root ROOT build ARGS...``; ``replay=False`` sets PYLXCORE_BUILD_REPLAY=0."""
    env = dict(os.environ)
    env.pop("PYLXCORE_BUILD_REPLAY", None)
    if not replay:
        env["PYLXCORE_BUILD_REPLAY"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--root", str(root), "build", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    *err, last = proc.stderr.splitlines() or [""]
    if check:
        assert proc.returncode == 0, proc.stderr
    refs_file = root / "refs.json"
    refs = json.loads(refs_file.read_text()) if refs_file.exists() else {}
    return Build(proc.returncode, proc.stdout, "\n".join(err), last.removeprefix("PATH="), refs.get(name, ""))


def untimed(out: str) -> str:
    """Build output without its measured durations ("0.01s"), which no two runs share."""
    return re.sub(r"\b\d+\.\d\ds\b", "#.##s", out)
