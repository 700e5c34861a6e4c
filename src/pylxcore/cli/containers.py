"""The commands on existing containers: ps, logs, start, stop, restart, kill, rm, inspect."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

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
from pylxcore.errors import ContainerNotFound, ImageNotFound, NotFound, SpecError
from pylxcore.runtime.state import ContainerState

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


def cmd_ps(args: argparse.Namespace) -> int:
    """``ps``: running containers (``-a``: all), newest first."""
    from pylxcore.cli import psfilter  # (docker's --filter, -n, -l, -s and templates)

    engine = Engine(root=args.root)

    def image_id(ref: str) -> str | None:
        return engine.images.get(ref).id if engine.images.exists(ref) else None

    listed = list(reversed(engine.containers.list(all=psfilter.wants_all(args))))
    listed = psfilter.select(listed, args, image_id)
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
        for container in listed
    ]
    width: int | None = None if args.no_trunc else 12
    if args.quiet:
        for row in rows:
            print(row["id"][:width])
    elif args.format == "json":
        print_json_lines(rows)
    elif args.format != "table":
        from pylxcore.cli.dockershape import ps_row

        docker_rows = [ps_row(c, _status(c)) for c in listed]
        if args.size:
            for row, c in zip(docker_rows, listed):
                row["Size"] = psfilter.size_text(c)
        text = psfilter.render_rows(args.format, docker_rows)
        if text:
            print(text)
    else:
        headers = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
        cells = []
        for row in rows:
            command = " ".join(row["command"])
            if not args.no_trunc:
                command = truncate(command, 20)
            cid, created = row["id"][:width], ago(row["created"])
            cells.append((cid, row["image"], f'"{command}"', created, row["status"], row["name"]))
        if args.size:
            sized = [(*cell, psfilter.size_text(c)) for cell, c in zip(cells, listed)]
            print(table((*headers, "SIZE"), sized))
        else:
            print(table(headers, cells))
    return EXIT_OK


def _status(container: Container) -> str:
    """The STATUS column: "Up 5 seconds", "Up 1 second (Paused)", "Exited (3) 2 minutes ago", "Created"."""
    now = time.time()
    if container.state is ContainerState.CREATED:
        return "Created"
    if container.state in (ContainerState.RUNNING, ContainerState.FROZEN):
        text = "Up " + human_duration(now - (container.started_at or now))
        if container.health is not None:  # Docker's words
            text += " (health: starting)" if container.health == "starting" else f" ({container.health})"
        return text + " (Paused)" if container.state is ContainerState.FROZEN else text
    code = "?" if container.exit_code is None else str(container.exit_code)
    word = "Restarting" if container.state is ContainerState.RESTARTING else "Exited"
    return f"{word} ({code}) {ago(container.finished_at)}".rstrip()


def cmd_logs(args: argparse.Namespace) -> int:
    """``logs NAME``: the main process's stdout to our stdout, its stderr to our stderr."""
    container = Engine(root=args.root).containers.get(args.name)
    if args.follow and args.since is None and args.until is None:
        follow_logs(container, tail=args.tail, timestamps=args.timestamps)
        return EXIT_OK
    from pylxcore.cli.timespec import parse_time
    from pylxcore.runtime.logs import last_lines, render  # (ps and the rest need no log code)

    if args.follow:
        raise SpecError("--since and --until read the log as it is: not with -f", key="logs")
    since = parse_time(args.since, key="--since") if args.since else None
    until = parse_time(args.until, key="--until") if args.until else None
    entries = [e for e in container.log_entries(since=since) if until is None or e.time < until]
    # The last lines over both streams, in the order they were written; each
    # entry to the stream it came from.
    for entry in last_lines(entries, args.tail):
        out = sys.stdout if entry.stream == "stdout" else sys.stderr
        write_bytes(out, b"".join(render([entry], args.timestamps)))
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    """``start NAME...``: start stopped containers. ``--all-restartable``: those
    with restart policy always or unless-stopped (unless their user stopped
    them), as Docker's daemon does when it starts: for a host's boot."""
    containers = Engine(root=args.root).containers
    if args.all_restartable:
        for container in containers.start_restartable():
            print(container.name)
        return EXIT_OK
    if not args.names:
        print("pylxcore: error: start: give containers' names, or --all-restartable", file=sys.stderr)
        return EXIT_ERROR
    if args.attach or args.interactive:
        from pylxcore.cli.terminal import attach_container

        if len(args.names) != 1:
            print("pylxcore: error: start: -a and -i take one container", file=sys.stderr)
            return EXIT_ERROR
        container = containers.get(args.names[0]).start()
        return attach_container(
            container, interactive=args.interactive, detach_keys=args.detach_keys, started=True
        )
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
            found.append(_inspect_one(engine, ref, args.type, docker=args.format is not None))
        except NotFound as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
    if args.format is not None:
        from pylxcore.cli.gotemplate import render  # (docker's documents through a Go template)

        for doc in found:
            print(render(args.format, doc))
        return code
    print(json.dumps(found, indent=4, default=str))
    return code


def _inspect_one(engine: Engine, ref: str, kind: str | None, *, docker: bool = False) -> dict[str, Any]:
    """``ref``'s document: pylxcore's, or with ``docker`` the shape of Docker's (for -f)."""
    from pylxcore.cli import dockershape  # (only inspect -f needs Docker's shape)

    if kind in (None, "container"):
        try:
            ctr = engine.containers.get(ref)
            return dockershape.container_document(ctr) if docker else ctr.inspect()
        except ContainerNotFound:
            if kind == "container":
                raise
    from pylxcore.cli.images import image_info  # (only an image's inspect needs it)

    try:
        image = engine.images.get(ref)
        return dockershape.image_document(image) if docker else image_info(image)
    except ImageNotFound:
        if kind == "image":
            raise
    raise NotFound(f"no container or image {ref!r} in {engine.root}", name=ref)
