"""A container's cgroups on this host: their name, what they report (Stats, frozen), and their removal."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import attrs

from pylxcore.runtime.limits import host_layout


@attrs.frozen
class Stats:
    """Resource use read from the container's cgroups (None where unreadable)."""

    memory_bytes: int | None
    memory_peak_bytes: int | None
    memory_limit_bytes: int | None
    cpu_seconds: float | None
    pids: int | None


def cgroup_prefix(root_id: str) -> str:
    """What the cgroup name of every container and build container of the
    store ``root_id`` starts with (so a sweep finds them all, and only them)."""
    return f"pylxcore-{root_id}-"


def cgroup_name(root_id: str, name: str) -> str:
    """The cgroup dir (``lxc.cgroup.dir``) of container or build container
    ``name`` of the store ``root_id``, in every hierarchy."""
    return cgroup_prefix(root_id) + name


def read_stats(cgroup: str) -> Stats:
    """Memory (current, peak, limit), CPU seconds and pid count of the cgroup
    dir ``cgroup``; None for what cannot be read (never raises)."""
    layout = host_layout()

    def read(controller: str, v1file: str, v2file: str) -> str | None:
        entry = layout.controllers.get(controller)
        if entry is None:
            return None
        path = os.path.join(entry[1], cgroup, v1file if entry[0] == "v1" else v2file)
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            return None

    def as_int(text: str | None) -> int | None:
        return int(text) if text and text.lstrip("-").isdigit() else None

    cpu: float | None = None
    usage = read("cpuacct", "cpuacct.usage", "cpu.stat")
    if usage and usage.isdigit():
        cpu = int(usage) / 1e9
    elif usage:
        fields = dict(line.split() for line in usage.splitlines() if len(line.split()) == 2)
        cpu = int(fields.get("usage_usec", 0)) / 1e6
    limit = as_int(read("memory", "memory.limit_in_bytes", "memory.max"))
    return Stats(
        memory_bytes=as_int(read("memory", "memory.usage_in_bytes", "memory.current")),
        memory_peak_bytes=as_int(read("memory", "memory.max_usage_in_bytes", "memory.peak")),
        memory_limit_bytes=limit if limit is not None and limit < 1 << 60 else None,
        cpu_seconds=cpu,
        pids=as_int(read("pids", "pids.current", "pids.current")),
    )


def frozen(cgroup: str) -> bool:
    """Whether the freezer holds the cgroup dir ``cgroup`` (or is freezing it);
    False when that cannot be read."""
    layout = host_layout()
    entry = layout.controllers.get("freezer")
    try:
        if entry and entry[0] == "v1":
            with open(os.path.join(entry[1], cgroup, "freezer.state")) as fh:
                return fh.read().strip() in ("FROZEN", "FREEZING")
        unified = next((p for v, p in layout.controllers.values() if v == "v2"), None)
        if unified:
            with open(os.path.join(unified, cgroup, "cgroup.freeze")) as fh:
                return fh.read().strip() == "1"
    except OSError:
        return False
    return False


def remove_cgroups(name: str) -> None:
    """Remove cgroup ``name`` and liblxc's ``name.monitor`` in every hierarchy
    (name=systemd and the unified one hold no controller we use, but liblxc
    makes them there too), killing what still lives in them."""
    for base in host_layout().all_dirs:
        for suffix in ("", ".monitor"):
            path = os.path.join(base, name + suffix)
            if os.path.exists(path):  # (plain strings: this runs at every remove)
                remove_cgroup(Path(path))


def remove_cgroup(path: Path) -> bool:
    """Kill what still lives in a leftover cgroup tree (the payload of a
    container whose monitor was killed dies a moment later, or not at all),
    then rmdir it deepest first. False if it could not be removed."""
    dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [path]
    for _ in range(300):
        pids = []
        for d in dirs:
            with contextlib.suppress(OSError):
                pids += [int(x) for x in (d / "cgroup.procs").read_text().split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for d in dirs:
            with contextlib.suppress(OSError):
                d.rmdir()
        if not path.exists():
            return True
        time.sleep(0.01)
    return False
