"""The commands on existing containers: ps, logs, start, stop, restart, kill, rm, inspect, stats."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs

from pylxcore.cli.attach import follow_logs
from pylxcore.cli.output import (
    EXIT_ERROR,
    EXIT_OK,
    ago,
    each,
    human_duration,
    print_json_lines,
    report_error,
    table,
    truncate,
    write_bytes,
)
from pylxcore.engine import Engine
from pylxcore.errors import ContainerNotFound, ImageNotFound, NotFound, PylxcoreError
from pylxcore.runtime.container import ContainerState
from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.runtime.cgroups import Stats
    from pylxcore.runtime.container import Container


def cmd_ps(args: argparse.Namespace) -> int:
    """``ps``: running containers (``-a``: all), newest first."""
    # The handles as listed: their state was read once, just now.
    rows: list[dict[str, Any]] = [
        {
            "id": container.id,
            "name": container.name,
            "image": container.image,
            "command": list(container.command),
            "created": container.created,
            "state": container.state.value,
            "status": _status(container),
            "exit_code": container.exit_code,
        }
        for container in reversed(Engine(root=args.root).containers.list(all=args.all))
    ]
    width: int | None = None if args.no_trunc else 12
    if args.quiet:
        for row in rows:
            print(row["id"][:width])
    elif args.format == "json":
        print_json_lines(rows)
    else:
        headers = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
        cells = []
        for row in rows:
            command = " ".join(row["command"])
            if not args.no_trunc:
                command = truncate(command, 20)
            cid, created = row["id"][:width], ago(row["created"])
            cells.append((cid, row["image"], f'"{command}"', created, row["status"], row["name"]))
        print(table(headers, cells))
    return EXIT_OK


def _status(container: Container) -> str:
    """The STATUS column: "Up 5 seconds", "Up 1 second (Paused)", "Exited (3) 2 minutes ago", "Created"."""
    now = time.time()
    if container.state is ContainerState.CREATED:
        return "Created"
    if container.state in (ContainerState.RUNNING, ContainerState.FROZEN):
        text = "Up " + human_duration(now - (container.started_at or now))
        return text + " (Paused)" if container.state is ContainerState.FROZEN else text
    code = "?" if container.exit_code is None else str(container.exit_code)
    return f"Exited ({code}) {ago(container.finished_at)}".rstrip()


def cmd_logs(args: argparse.Namespace) -> int:
    """``logs NAME``: the main process's stdout to our stdout, its stderr to our stderr."""
    container = Engine(root=args.root).containers.get(args.name)
    if args.follow:
        follow_logs(container, tail=args.tail, timestamps=args.timestamps)
        return EXIT_OK
    from pylxcore.runtime.logs import last_lines, render  # (ps and the rest need no log code)

    # The last lines over both streams, in the order they were written; each
    # entry to the stream it came from.
    for entry in last_lines(container.log_entries(), args.tail):
        out = sys.stdout if entry.stream == "stdout" else sys.stderr
        write_bytes(out, b"".join(render([entry], args.timestamps)))
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    """``start NAME...``: start stopped containers."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).start())


def cmd_stop(args: argparse.Namespace) -> int:
    """``stop NAME...``: SIGTERM, then SIGKILL after ``-t`` seconds."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).stop(timeout=args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    """``restart NAME...``: stop (if running) and start again."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).restart(timeout=args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    """``kill NAME...``: send a signal (SIGKILL unless ``-s``) to the main process."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).kill(args.signal))


def cmd_rm(args: argparse.Namespace) -> int:
    """``rm NAME...``: remove containers (``-f``: even running ones)."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).remove(force=args.force))


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect NAME|REF...``: a JSON array, containers first, then images (as docker)."""
    import json  # (only inspect and --format json print JSON)

    engine = Engine(root=args.root)
    found: list[dict[str, Any]] = []
    code = EXIT_OK
    for ref in args.names:
        try:
            found.append(_inspect_one(engine, ref, args.type))
        except NotFound as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
    print(json.dumps(found, indent=4, default=str))
    return code


def _inspect_one(engine: Engine, ref: str, kind: str | None) -> dict[str, Any]:
    if kind in (None, "container"):
        try:
            return engine.containers.get(ref).inspect()
        except ContainerNotFound:
            if kind == "container":
                raise
    from pylxcore.cli.images import image_info  # (only an image's inspect needs it)

    try:
        return image_info(engine.images.get(ref))
    except ImageNotFound:
        if kind == "image":
            raise
    raise NotFound(f"no container or image {ref!r} in {engine.root}", name=ref)


def cmd_stats(args: argparse.Namespace) -> int:
    """``stats [NAME...]``: one snapshot of resource use (running containers by default)."""
    engine = Engine(root=args.root)
    code = EXIT_OK
    snapshots: list[tuple[Container, Stats]] = []
    if args.names:
        for name in args.names:
            try:
                container = engine.containers.get(name)
                snapshots.append((container, container.stats()))
            except PylxcoreError as err:
                report_error(err, args.debug)
                code = EXIT_ERROR
    else:
        for container in engine.containers.list():
            try:
                snapshots.append((container, container.stats()))
            except PylxcoreError:
                continue  # it stopped while we looked
    if args.format == "json":
        print_json_lines({"id": c.id, "name": c.name, **attrs.asdict(s)} for c, s in snapshots)
        return code
    headers = ("CONTAINER ID", "NAME", "CPU TIME", "MEM USAGE / LIMIT", "MEM %", "PIDS")
    cells = []
    for c, s in snapshots:
        usage = "--" if s.memory_bytes is None else human_size(s.memory_bytes, binary=True)
        limit = "--" if s.memory_limit_bytes is None else human_size(s.memory_limit_bytes, binary=True)
        percent = "--"
        if s.memory_bytes is not None and s.memory_limit_bytes:
            percent = f"{100.0 * s.memory_bytes / s.memory_limit_bytes:.2f}%"
        cpu = "--" if s.cpu_seconds is None else f"{s.cpu_seconds:.2f}s"
        pids = "--" if s.pids is None else str(s.pids)
        cells.append((c.id[:12], c.name, cpu, f"{usage} / {limit}", percent, pids))
    print(table(headers, cells))
    return code
