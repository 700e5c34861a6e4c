"""The commands on containers' resources: ``update`` (their limits, while
they run) and ``stats`` (their use, refreshed every second, or once)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from pylxcore.cli.output import EXIT_ERROR, EXIT_OK, each, print_json_lines, report_error, table
from pylxcore.engine import Engine
from pylxcore.errors import PylxcoreError, SpecError
from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

# ``update``'s options: the Limits field each one sets (docker's flag names).
UPDATE_FLAGS = {"memory": "memory", "memory_swap": "memory_swap", "cpus": "cpus", "cpu_shares": "cpu_shares",
                "cpuset_cpus": "cpuset", "pids_limit": "pids"}

HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
# A ``table`` template's headers, as docker names these fields.
_HEADER_NAMES = {"CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "PIDs": "PIDS",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "Container": "CONTAINER"}
INTERVAL = 1.0  # seconds between two refreshes (docker's)
NO_STREAM_SAMPLE = 0.5  # --no-stream: seconds between the two readings its CPU % needs


def cmd_update(args: argparse.Namespace) -> int:
    """``update [--memory …] [--restart POLICY] NAME...``: new limits, at once
    for running containers, and a new restart policy."""
    limits = {field: getattr(args, flag) for flag, field in UPDATE_FLAGS.items()
              if getattr(args, flag) is not None}
    if not limits and args.restart is None:
        raise SpecError("update needs at least one limit: --memory, --memory-swap, --cpus, --cpu-shares,"
                        " --cpuset-cpus or --pids-limit, or --restart", key="limits")
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).update(limits or None, restart=args.restart))


# -- stats ------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    """``stats [--no-stream] [NAME...]``: resource use, refreshed every second
    until Ctrl-C (or until every named container has stopped); ``--no-stream``: once."""
    from pylxcore.runtime.statstream import document, system_cpu_ns

    containers = Engine(root=args.root).containers
    code = EXIT_OK
    named: list[Container] = []
    for name in args.names:
        try:
            named.append(containers.get(name))
        except PylxcoreError as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
    before: dict[str, dict[str, Any]] = {}  # container id -> its last cpu_stats
    first = True
    while True:
        targets = named if args.names else list(containers.list())
        docs: list[tuple[Container, dict[str, Any]]] = []
        for c in targets:
            try:
                reading = c.stats()
            except PylxcoreError as err:
                if args.names and first:
                    report_error(err, args.debug)
                    code = EXIT_ERROR
                continue  # (one that stopped since: no row)
            doc = document(c, reading, system_cpu_ns(), before.get(c.id))
            before[c.id] = doc["cpu_stats"]
            docs.append((c, doc))
        if first and args.names:
            named = [c for c, _ in docs]  # the others were reported
        if args.no_stream and first and docs:
            first = False
            time.sleep(NO_STREAM_SAMPLE)  # CPU % needs a second reading
            continue
        _show(args, docs, clear=not args.no_stream and sys.stdout.isatty())
        first = False
        if args.no_stream or (args.names and not docs):
            return code
        time.sleep(INTERVAL)


def rows(docs: list[tuple[Container, dict[str, Any]]], no_trunc: bool = False) -> list[dict[str, Any]]:
    """docker's stats fields of each container's document (for ``--format``)."""
    from pylxcore.runtime.statstream import cpu_percent

    out = []
    for c, doc in docs:
        mem, pids = doc["memory_stats"], doc["pids_stats"]
        blkio = doc["blkio_stats"]["io_service_bytes_recursive"]
        limit = mem["limit"]
        out.append({
            "ID": c.id if no_trunc else c.id[:12],
            "Container": c.id if no_trunc else c.id[:12],
            "Name": c.name,
            "CPUPerc": f"{cpu_percent(doc):.2f}%",
            "MemUsage": f"{human_size(mem['usage'], binary=True)} / {human_size(limit, binary=True)}",
            "MemPerc": f"{100.0 * mem['usage'] / limit:.2f}%" if limit else "0.00%",
            "NetIO": " / ".join(human_size(sum(n[k] for n in doc["networks"].values()))
                                for k in ("rx_bytes", "tx_bytes")),
            "BlockIO": " / ".join(human_size(sum(b["value"] for b in blkio if b["op"] == op))
                                  for op in ("Read", "Write")),
            "PIDs": str(pids["current"]),
        })
    return out


def _show(args: argparse.Namespace, docs: list[tuple[Container, dict[str, Any]]], *, clear: bool) -> None:
    from pylxcore.runtime.statstream import cpu_percent

    if args.format == "json":
        print_json_lines({
            "id": c.id, "name": c.name, "cpu_percent": round(cpu_percent(doc), 2),
            "memory_bytes": doc["memory_stats"]["usage"],
            "memory_peak_bytes": doc["memory_stats"]["max_usage"],
            "memory_limit_bytes": doc["memory_stats"]["limit"], "pids": doc["pids_stats"]["current"],
            "cpu_seconds": doc["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9,
        } for c, doc in docs)
        sys.stdout.flush()
        return
    shown = rows(docs, args.no_trunc)
    if args.format == "table":
        keys = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
        text = table(HEADERS, [[row[k] for k in keys] for row in shown])
    else:
        from pylxcore.cli.gotemplate import render_table

        text = render_table(args.format, shown, _HEADER_NAMES)
    if text or clear:
        print(("\033[2J\033[H" if clear else "") + text, flush=True)
