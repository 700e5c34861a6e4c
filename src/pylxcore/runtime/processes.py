"""The lxc-execute processes of a store, found by their command line, and ending them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from pylxcore.procs import process_start_time


def lxc_processes(where: Path) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the lxc-execute processes whose lxcpath is ``where`` or
    lies below it (a store's containers dir, or its staging dir for builds)."""
    prefix = str(where) + "/"
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and argv[0].endswith("lxc-execute") and "-P" in argv:
            lxcpath = argv[argv.index("-P") + 1] if argv.index("-P") + 1 < len(argv) else ""
            if lxcpath.startswith(prefix) or lxcpath == str(where):
                out.append((int(entry), argv))
    return out


def container_names(processes: list[tuple[int, list[str]]]) -> set[str]:
    """The container names (``-n``) of lxc-execute ``processes``."""
    return {argv[argv.index("-n") + 1] for _, argv in processes if "-n" in argv[:-1]}


def kill_and_reap(pid: int) -> None:
    """SIGKILL ``pid`` and wait (up to 2 s) until it has ended. It is not our
    child, so its parent reaps it: a zombie has ended all the same."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if process_start_time(pid) is None:  # gone, or a zombie
            return
        time.sleep(0.01)
