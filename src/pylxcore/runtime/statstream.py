"""Resource use as Docker reports it: ``Container.stats(stream=True)``'s
documents (docker-py's ``stats(decode=True)`` shape) and their CPU %.

A document pairs two readings of the container's cgroups (``cpu_stats``
and ``precpu_stats``, the one before), each with the host's CPU time from
/proc/stat at that moment, so CPU % is docker's: the container's CPU time
over the host's in between, times the online CPUs.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import TYPE_CHECKING, Any, Iterator

from pylxcore.errors import InvalidState
from pylxcore.runtime.cgroups import Stats
from pylxcore.runtime.limits import host_layout

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

_LIVE = ("running", "paused")


def system_cpu_ns() -> int:
    """The host's CPU time so far (every CPU, idle too), in ns: what docker
    calls ``system_cpu_usage`` (the first 7 fields of /proc/stat's cpu line)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:8]
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields) * 1_000_000_000 // ticks


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _cpu(stats: Stats | None, system: int) -> dict[str, Any]:
    online = len(os.sched_getaffinity(0))
    total = 0 if stats is None or stats.cpu_seconds is None else int(stats.cpu_seconds * 1e9)
    return {"cpu_usage": {"total_usage": total}, "system_cpu_usage": system, "online_cpus": online}


def document(container: Container, now: Stats, system: int, before: dict[str, Any] | None) -> dict[str, Any]:
    """docker's stats document for ``container`` from the reading ``now``
    (at host CPU time ``system``) and the previous document's ``cpu_stats``
    (``before``; None for the first: then CPU % is 0)."""
    cgroup = container._collection._cgroup_dir(container.key)
    return {
        "read": _now(),
        "id": container.id,
        "name": "/" + container.name,
        "cpu_stats": _cpu(now, system),
        "precpu_stats": before or _cpu(None, 0),
        "memory_stats": {
            "usage": now.memory_bytes or 0,
            "max_usage": now.memory_peak_bytes or 0,
            "limit": now.memory_limit_bytes or _host_memory(),
        },
        "pids_stats": {"current": now.pids or 0},
        "blkio_stats": {"io_service_bytes_recursive": block_io(cgroup)},
        "networks": networks(container._pids()[0]),
    }


def block_io(cgroup: str) -> list[dict[str, Any]]:
    """Bytes read and written by the cgroup dir ``cgroup``, per device, as
    docker's ``blkio_stats.io_service_bytes_recursive`` (empty when unknown)."""
    layout = host_layout()
    v1, v2 = layout.controllers.get("blkio"), layout.controllers.get("io")
    out: list[dict[str, Any]] = []
    try:
        if v1 is not None and v1[0] == "v1":
            with open(os.path.join(v1[1], cgroup, "blkio.throttle.io_service_bytes_recursive")) as fh:
                for line in fh:
                    fields = line.split()
                    if len(fields) == 3 and fields[1] in ("Read", "Write") and ":" in fields[0]:
                        major, minor = fields[0].split(":")
                        out.append({"major": int(major), "minor": int(minor), "op": fields[1],
                                    "value": int(fields[2])})
        elif v2 is not None:
            with open(os.path.join(v2[1], cgroup, "io.stat")) as fh:
                for line in fh:
                    device, *pairs = line.split()
                    major, minor = device.split(":")
                    counts = dict(pair.split("=", 1) for pair in pairs)
                    for op, key in (("Read", "rbytes"), ("Write", "wbytes")):
                        out.append({"major": int(major), "minor": int(minor), "op": op,
                                    "value": int(counts.get(key, 0))})
    except (OSError, ValueError):
        return []
    return out


def networks(pid: int | None) -> dict[str, dict[str, int]]:
    """Bytes received and sent on each interface of the network namespace
    of ``pid`` (the container's init) but loopback, as docker's ``networks``."""
    if pid is None:
        return {}
    out: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as fh:
            for line in fh.readlines()[2:]:
                name, _, counters = line.partition(":")
                fields = counters.split()
                if name.strip() != "lo" and len(fields) >= 9:
                    out[name.strip()] = {"rx_bytes": int(fields[0]), "tx_bytes": int(fields[8])}
    except (OSError, ValueError):
        return {}
    return out


def _host_memory() -> int:
    """What docker gives as the limit of a container without one: the host's memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def cpu_percent(doc: dict[str, Any]) -> float:
    """docker's CPU % of a stats document (0.0 for the first of a stream)."""
    cpu, pre = doc["cpu_stats"], doc["precpu_stats"]
    used = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    if pre["system_cpu_usage"] == 0 or used <= 0 or system <= 0:
        return 0.0
    return float(used / system * cpu["online_cpus"] * 100.0)


def stream(container: Container, interval: float = 1.0) -> Iterator[dict[str, Any]]:
    """docker's stats documents for ``container``, one now and one every
    ``interval`` seconds, until it stops (the stream then ends). Raises
    InvalidState when it is not running to begin with."""
    before: dict[str, Any] | None = None
    first = True
    while True:
        try:
            now = container.stats()
        except InvalidState:
            if first:
                raise
            return  # it stopped: so does the stream, as docker-py's
        doc = document(container, now, system_cpu_ns(), before)
        first = False
        before = doc["cpu_stats"]
        yield doc
        time.sleep(interval)
