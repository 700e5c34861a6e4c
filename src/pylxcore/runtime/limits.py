"""Limits -> liblxc cgroup keys, for cgroup v1 and v2 hosts.

The mapping is pure (it takes a description of the host's cgroup layout), so it
is tested without a container. ``host_layout()`` reads that description once.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

import attrs

from pylxcore.errors import LimitError, SpecError
from pylxcore.spec import Limits

CPU_PERIOD_US = 100_000

# Every cgroup file cgroup_keys may set, v1's and v2's: the lines of a
# container's config that are its limits (what ``update`` replaces).
LIMIT_FILES = frozenset({
    "memory.limit_in_bytes", "memory.max", "memory.memsw.limit_in_bytes", "memory.swap.max",
    "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.max", "cpu.shares", "cpu.weight", "cpuset.cpus",
    "pids.max",
})

Version = Literal["v1", "v2"]


@attrs.frozen
class CgroupLayout:
    """Where each controller lives on this host."""

    # name -> (version, the directory liblxc creates container cgroups in)
    controllers: dict[str, tuple[Version, str]]
    memsw: bool = False  # v1 swap accounting (memory.memsw.*) present
    online_cpus: frozenset[int] = frozenset()
    # Every hierarchy liblxc makes a container cgroup in, named ones (name=systemd)
    # and the unified one included: where leftovers are looked for.
    all_dirs: tuple[str, ...] = ()

    def version(self, controller: str) -> Version | None:
        entry = self.controllers.get(controller)
        return entry[0] if entry else None


@functools.lru_cache(maxsize=1)
def host_layout() -> CgroupLayout:
    """Read the host's cgroup mounts from /proc/self/mountinfo."""
    controllers: dict[str, tuple[Version, str]] = {}
    all_dirs: list[str] = []
    unified: str | None = None
    # liblxc (as root, lxc.cgroup.relative unset) puts containers under the
    # cgroup of pid 1, not of the caller; so that is where we look for them.
    init_paths: dict[str, str] = {}
    with open("/proc/1/cgroup") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else ["unified"]:
                init_paths[name.replace("name=", "")] = path.lstrip("/")
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            fstype, mnt, opts = rfields[0], fields[4], rfields[2]
            if fstype == "cgroup":
                # The hierarchy's name in /proc/1/cgroup is one of its mount options.
                hier = next(
                    (
                        o[5:] if o.startswith("name=") else o
                        for o in opts.split(",")
                        if (o[5:] if o.startswith("name=") else o) in init_paths
                    ),
                    "",
                )
                all_dirs.append(os.path.join(mnt, init_paths.get(hier, "")))
                for opt in opts.split(","):
                    if opt in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids", "blkio"):
                        controllers.setdefault(opt, ("v1", os.path.join(mnt, init_paths.get(opt, ""))))
            elif fstype == "cgroup2":
                unified = os.path.join(mnt, init_paths.get("unified", ""))
                all_dirs.append(unified)
    if unified:
        try:
            with open(os.path.join(unified, "cgroup.controllers")) as fh:
                v2_names = fh.read().split()
        except OSError:
            v2_names = []
        for name in v2_names:
            controllers.setdefault(name, ("v2", unified))
        # v2 has cpu accounting built into "cpu"; freezing is cgroup.freeze
        if "cpu" in v2_names:
            controllers.setdefault("cpuacct", ("v2", unified))
    memsw = False
    mem = controllers.get("memory")
    if mem and mem[0] == "v1":
        memsw = os.path.exists(os.path.join(mem[1], "memory.memsw.limit_in_bytes"))
    elif mem:
        memsw = True
    return CgroupLayout(
        controllers=controllers,
        memsw=memsw,
        online_cpus=frozenset(os.sched_getaffinity(0)),
        all_dirs=tuple(dict.fromkeys(all_dirs)),
    )


def parse_cpuset(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        start = int(lo)
        cpus.update(range(start, int(hi) + 1 if hi else start + 1))
    return cpus


def _need(layout: CgroupLayout, controller: str, limit: str, value: object) -> Version:
    version = layout.version(controller)
    if version is None:
        raise LimitError(
            f"{limit}={value!r} cannot be enforced: the host has no '{controller}' cgroup controller",
            limit=limit,
            value=value,
        )
    return version


def cgroup_keys(limits: Limits, layout: CgroupLayout) -> list[tuple[str, str]]:
    """The ``lxc.cgroup.*`` / ``lxc.cgroup2.*`` config items for ``limits``.

    Raises LimitError when the host cannot enforce one of them (a missing
    controller, no swap accounting, CPUs the host does not have).
    """
    keys: list[tuple[str, str]] = []

    def add(version: Version, v1: tuple[str, str], v2: tuple[str, str]) -> None:
        if version == "v1":
            keys.append((f"lxc.cgroup.{v1[0]}", v1[1]))
        else:
            keys.append((f"lxc.cgroup2.{v2[0]}", v2[1]))

    if limits.memory is not None:
        v = _need(layout, "memory", "memory", limits.memory)
        add(v, ("memory.limit_in_bytes", str(limits.memory)), ("memory.max", str(limits.memory)))
    if limits.memory_swap is not None:
        v = _need(layout, "memory", "memory_swap", limits.memory_swap)
        if not layout.memsw:
            raise LimitError(
                "memory_swap cannot be enforced: the kernel has no swap accounting (memory.memsw.*)",
                limit="memory_swap",
                value=limits.memory_swap,
            )
        # memory_swap's rules live in Limits alone; swap() is asked only here
        # because an override may set memory_swap without memory, and only the
        # limits a container runs with must have both.
        try:
            swap = limits.swap()
        except SpecError as err:
            raise LimitError(err.reason, limit="memory_swap", value=limits.memory_swap) from err
        if swap == -1:
            add(v, ("memory.memsw.limit_in_bytes", "-1"), ("memory.swap.max", "max"))
        else:
            add(
                v,
                ("memory.memsw.limit_in_bytes", str(limits.memory_swap)),
                ("memory.swap.max", str(swap)),
            )
    if limits.cpus is not None:
        v = _need(layout, "cpu", "cpus", limits.cpus)
        if layout.online_cpus and limits.cpus > len(layout.online_cpus):
            raise LimitError(
                f"cpus={limits.cpus} is more than the {len(layout.online_cpus)} CPUs this host has",
                limit="cpus",
                value=limits.cpus,
            )
        quota = max(1000, int(round(limits.cpus * CPU_PERIOD_US)))
        if v == "v1":
            keys.append(("lxc.cgroup.cpu.cfs_period_us", str(CPU_PERIOD_US)))
            keys.append(("lxc.cgroup.cpu.cfs_quota_us", str(quota)))
        else:
            keys.append(("lxc.cgroup2.cpu.max", f"{quota} {CPU_PERIOD_US}"))
    if limits.cpu_shares is not None:
        v = _need(layout, "cpu", "cpu_shares", limits.cpu_shares)
        # v2 weight range is 1..10000 with 100 as default; shares' default is 1024
        weight = max(1, min(10000, 1 + ((limits.cpu_shares - 2) * 9999) // 262142))
        add(v, ("cpu.shares", str(limits.cpu_shares)), ("cpu.weight", str(weight)))
    if limits.cpuset is not None:
        v = _need(layout, "cpuset", "cpuset", limits.cpuset)
        wanted = parse_cpuset(limits.cpuset)
        missing = wanted - set(layout.online_cpus) if layout.online_cpus else set()
        if missing:
            raise LimitError(
                f"cpuset={limits.cpuset!r} names CPUs this host does not have: {sorted(missing)}"
                f" (online: {sorted(layout.online_cpus)})",
                limit="cpuset",
                value=limits.cpuset,
            )
        add(v, ("cpuset.cpus", limits.cpuset), ("cpuset.cpus", limits.cpuset))
    if limits.pids is not None:
        v = _need(layout, "pids", "pids", limits.pids)
        value = "max" if limits.pids == -1 else str(limits.pids)  # (-1: none, in an override)
        add(v, ("pids.max", value), ("pids.max", value))
    return keys


# What a limit file holds when nothing limits it, v1's and v2's: what a
# running container's cgroup gets when ``update`` removes that limit.
UNLIMITED = {
    "memory.limit_in_bytes": "-1", "memory.max": "max", "memory.memsw.limit_in_bytes": "-1",
    "memory.swap.max": "max", "cpu.cfs_quota_us": "-1", "cpu.max": f"max {CPU_PERIOD_US}",
    "cpu.shares": "1024", "cpu.weight": "100", "pids.max": "max",
}


def released_keys(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The keys of ``before`` (cgroup_keys of a container's old limits) that
    ``after`` no longer sets, each with the value that lifts its limit (the
    files without one, like cpu.cfs_period_us, are left as they are). Raises nothing."""
    kept = {key for key, _ in after}
    out = []
    for key, _ in before:
        file = key.removeprefix("lxc.cgroup2.").removeprefix("lxc.cgroup.")
        if key not in kept and file in UNLIMITED:
            out.append((key, UNLIMITED[file]))
    return out
