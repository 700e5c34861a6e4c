"""The ``pylxcore`` command line: Docker's main commands over the same library.

    pylxcore build examples/web/image.yaml
    pylxcore run -d --name web1 -m 64M web:1.0
    pylxcore ps
    pylxcore exec web1 cat /www/health
    pylxcore rm -f web1

Each command is one function ``cmd_NAME(args) -> exit code``; :func:`main`
parses the arguments, calls it and turns errors into one line on stderr
(``pylxcore: error: ...``). Exit codes follow Docker's: 0 for success, 1 for
an error, 2 for bad usage, 125 when ``run``/``exec`` failed before the
command ran (otherwise they pass the command's own exit code through), 130
on Ctrl-C. docs/cli.md is the reference.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, Callable, Iterable, Sequence, TextIO

import attrs

from pylxcore import __version__
from pylxcore.build.stamp import write_stamp
from pylxcore.engine import Engine
from pylxcore.errors import BuildError, ContainerNotFound, ImageNotFound, NotFound, PylxcoreError, SpecError
from pylxcore.images import BuiltImage
from pylxcore.runtime.containers import PROGRAM_NOT_FOUND, Container, ContainerState, Stats
from pylxcore.spec import Image, Limits, Mount

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUN = 125  # run/exec: pylxcore failed before the command ran (as docker)
EXIT_NOT_FOUND = 127  # run: the command is not in the container (as docker)
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace], int]

# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------


def _write(stream: TextIO, data: bytes) -> None:
    """Write raw bytes from a container to ``stream`` (stdout or stderr) at once."""
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8", "replace"))
    else:
        buffer.write(data)
        buffer.flush()
    stream.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns like ``docker ps``: a header line, then one line per row."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """A rough duration, worded as Docker does ("5 seconds", "About an hour", "3 days")."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def _ago(when: float | None) -> str:
    return "" if not when else human_duration(time.time() - when) + " ago"


def human_size(size: float, *, binary: bool = False) -> str:
    """Docker's sizes: "4.26MB" (powers of 1000), or "1.5MiB" with ``binary``."""
    base = 1024.0 if binary else 1000.0
    units = ("B", "KiB", "MiB", "GiB", "TiB") if binary else ("B", "kB", "MB", "GB", "TB")
    value = float(size)
    for unit in units:
        if value < base or unit == units[-1]:
            return f"{value:.4g}{unit}"
        value /= base
    return f"{size}B"  # not reached


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_json_lines(items: Iterable[dict[str, Any]]) -> None:
    """``--format json``: one JSON object per line, as ``docker ps --format json``."""
    import json  # noqa: PLC0415  (deferred: the CLI should start fast)
    for item in items:
        print(json.dumps(item))


def report_error(err: BaseException, debug: bool) -> None:
    """One line on stderr (and the traceback first with ``--debug``)."""
    import traceback  # noqa: PLC0415  (deferred: the CLI should start fast)
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    if isinstance(err, PylxcoreError):
        text = str(err).strip()
    else:
        text = f"{type(err).__name__}: {err}".strip()
        if not debug:
            text += " (--debug shows the traceback)"
    first = text.splitlines()[0] if text else type(err).__name__
    print(f"pylxcore: error: {first}", file=sys.stderr)


def _each(args: argparse.Namespace, action: Callable[[str], object]) -> int:
    """Apply ``action`` to every name in ``args.names``; report each failure
    and carry on, like ``docker stop a b``. 1 if any failed."""
    code = EXIT_OK
    for name in args.names:
        try:
            action(name)
        except PylxcoreError as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
        else:
            print(name)
    return code


# --------------------------------------------------------------------------
# Argument conversion
# --------------------------------------------------------------------------


def _engine(args: argparse.Namespace) -> Engine:
    """The engine of ``--root``, else $PYLXCORE_ROOT, else the library default."""
    return Engine(root=args.root)


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``-e KEY=VALUE`` pairs; a bare ``-e KEY`` takes KEY's value from our environment."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise SpecError(f"bad environment variable {item!r}: expected KEY=VALUE", key="env")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def parse_volume(text: str) -> Mount:
    """``-v SRC:DST[:ro|rw]``; a relative SRC is taken from the current folder."""
    source, sep, rest = text.partition(":")
    if sep and source and not source.startswith("/"):
        text = os.path.abspath(source) + ":" + rest
    return Mount.parse(text)


def parse_signal(text: str) -> int:
    """A signal by name ("TERM", "SIGTERM") or number, for argparse."""
    if text.isdigit():
        number = int(text)
        if number in {int(s) for s in signal.valid_signals()}:
            return number
    else:
        name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise argparse.ArgumentTypeError(f"unknown signal {text!r}")


def parse_log_opts(items: Sequence[str]) -> dict[str, Any]:
    """``--log-opt max-size=10m`` and ``--log-opt max-file=3`` (docker's json-file
    options) as ``run``'s keyword arguments; the library checks the values."""
    options: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key == "max-size":
            options["log_max_size"] = value
        elif key == "max-file" and value.isdigit():
            options["log_max_files"] = int(value)
        else:
            raise SpecError(
                f"bad log option {item!r}: expected max-size=SIZE or max-file=N", key="log-opt"
            )
    return options


def _limits(args: argparse.Namespace) -> Limits | None:
    values = {key: getattr(args, key) for key in ("memory", "cpus", "pids") if getattr(args, key) is not None}
    return Limits(**values) if values else None


# --------------------------------------------------------------------------
# Streaming a container's output
# --------------------------------------------------------------------------


def _pump_logs(
    container: Container,
    stream: str,
    out: TextIO,
    tail: int | None,
    timestamps: bool,
    failures: list[BaseException],
) -> None:
    """Copy one stream of the container's log to ``out`` until it exits (a thread)."""
    try:
        chunks = container.logs(
            follow=True, stdout=stream == "stdout", stderr=stream == "stderr", tail=tail,
            timestamps=timestamps,
        )
        for chunk in chunks:
            _write(out, chunk)
    except BaseException as err:  # noqa: BLE001  (handed to the main thread)
        failures.append(err)


def follow_logs(container: Container, *, tail: int | None = None, timestamps: bool = False) -> None:
    """Stream the container's stdout to ours and its stderr to ours until it
    exits. Raises what the library raises while following."""
    import threading  # noqa: PLC0415  (deferred: the CLI should start fast)
    failures: list[BaseException] = []
    threads = [
        threading.Thread(
            target=_pump_logs,
            args=(container, stream, out, tail, timestamps, failures),
            name=f"pylxcore-logs-{stream}",
            daemon=True,
        )
        for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # With a timeout: a Ctrl-C that the kernel hands to one of the pump
        # threads would not wake a join() without one, and only the main
        # thread raises KeyboardInterrupt; it does so at its next wake-up.
        while thread.is_alive():
            thread.join(0.1)
    if failures:
        raise failures[0]


def _stamp(when: float) -> bytes:
    """The ``logs -t`` prefix: RFC 3339 UTC with microseconds."""
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z ").encode()


def _tail_lines(entries: list[tuple[float, str, bytes]], tail: int | None) -> list[tuple[float, str, bytes]]:
    """The last ``tail`` lines over both streams, in the order they were written."""
    if tail is None:
        return entries
    return entries[-tail:] if tail > 0 else []


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    """``build FILE``: build an image from its YAML (the file's folder is the context)."""
    path = args.file
    if os.path.isdir(path):
        path = os.path.join(path, "image.yaml")
    image = Image.load(path)
    tags: list[str] = args.tag or []
    if tags:
        image = attrs.evolve(image, name=tags[0])
    engine = _engine(args)
    try:
        built = engine.images.build(image, no_cache=args.no_cache, progress=not args.quiet)
    except BuildError as err:
        if args.quiet:  # the output was not shown as it ran: show its end now
            for line in getattr(err, "output_tail", []):
                print(f"  | {line}", file=sys.stderr)
        raise
    for extra in tags[1:]:
        engine.images.tag(built.id, extra)
    if not args.no_cache:
        write_stamp(engine, path, tags, image, built)
    if args.quiet:
        print(built.id)
    else:
        for name in [image.name, *tags[1:]]:
            print(f"Successfully tagged {name}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """``run IMAGE [CMD...]``: create and start a container; attached unless ``-d``."""
    engine = _engine(args)
    options: dict[str, Any] = {
        "name": args.name,
        "env": parse_env(args.env),
        "mounts": [parse_volume(v) for v in args.volume],
        "limits": _limits(args),
        "network": args.network,
        "workdir": args.workdir,
        "user": args.user,
        "userns": args.userns,
        **parse_log_opts(args.log_opt),
    }
    command = args.command or None
    container: Container
    if args.detach:
        try:
            container = engine.containers.run(args.image, command, detach=True, remove=args.rm, **options)
        except ContainerNotFound as err:
            if not args.rm:
                raise
            # It already ran and removed itself (--rm) before run() could reload it.
            print(getattr(err, "name", "") or args.name)
            return EXIT_OK
        print(container.name)
        return EXIT_OK
    # Attached: start it detached (so nothing removes it before we read its
    # exit code), stream its output as it comes, then wait.
    container = engine.containers.run(args.image, command, detach=True, remove=False, **options)
    code: int | None
    try:
        follow_logs(container)
        code = container.wait()
    except KeyboardInterrupt:
        _interrupt(container)
        raise
    finally:
        if args.rm:
            container.remove(force=True)
    if code is None:
        print(f"pylxcore: error: the exit code of container {container.name!r} was lost", file=sys.stderr)
        return EXIT_ERROR
    return code


def _interrupt(container: Container) -> None:
    """Ctrl-C while attached: pass SIGINT on to the container, like ``docker run``."""
    try:
        container.kill("SIGINT")
    except PylxcoreError:
        pass


def cmd_exec(args: argparse.Namespace) -> int:
    """``exec NAME CMD...``: run a command in a running container; its exit code is ours."""
    container = _engine(args).containers.get(args.name)
    stdin = sys.stdin.buffer.read() if args.interactive else None
    stream = container.exec_stream(
        args.command, env=parse_env(args.env), workdir=args.workdir, user=args.user, stdin=stdin
    )
    try:
        for name, chunk in stream:
            _write(sys.stdout if name == "stdout" else sys.stderr, chunk)
    except KeyboardInterrupt:
        try:
            os.kill(stream.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stream.wait()
        raise
    return stream.wait()


def cmd_ps(args: argparse.Namespace) -> int:
    """``ps``: running containers (``-a``: all), newest first."""
    rows: list[dict[str, Any]] = []
    for container in reversed(_engine(args).containers.list(all=args.all)):
        try:
            info = container.inspect()
        except ContainerNotFound:
            continue  # removed while we looked
        rows.append(
            {
                "id": container.id,
                "name": container.name,
                "image": container.image,
                "command": info["command"],
                "created": info["created"],
                "state": container.state.value,
                "status": _status(container),
                "exit_code": container.exit_code,
            }
        )
    width: int | None = None if args.no_trunc else 12
    if args.quiet:
        for row in rows:
            print(row["id"][:width])
    elif args.format == "json":
        _print_json_lines(rows)
    else:
        headers = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")
        cells = []
        for row in rows:
            command = " ".join(row["command"])
            if not args.no_trunc:
                command = _truncate(command, 20)
            cid, created = row["id"][:width], _ago(row["created"])
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
    return f"Exited ({code}) {_ago(container.finished_at)}".rstrip()


def cmd_logs(args: argparse.Namespace) -> int:
    """``logs NAME``: the main process's stdout to our stdout, its stderr to our stderr."""
    container = _engine(args).containers.get(args.name)
    if args.follow:
        follow_logs(container, tail=args.tail, timestamps=args.timestamps)
        return EXIT_OK
    lines: list[tuple[float, str, bytes]] = []
    for entry in container.log_entries():
        lines += [(entry.time, entry.stream, line) for line in entry.data.splitlines(keepends=True)]
    for when, stream, line in _tail_lines(lines, args.tail):
        out = sys.stdout if stream == "stdout" else sys.stderr
        _write(out, _stamp(when) + line if args.timestamps else line)
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    """``start NAME...``: start stopped containers."""
    containers = _engine(args).containers
    return _each(args, lambda name: containers.get(name).start())


def cmd_stop(args: argparse.Namespace) -> int:
    """``stop NAME...``: SIGTERM, then SIGKILL after ``-t`` seconds."""
    containers = _engine(args).containers
    return _each(args, lambda name: containers.get(name).stop(timeout=args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    """``restart NAME...``: stop (if running) and start again."""
    containers = _engine(args).containers
    return _each(args, lambda name: containers.get(name).restart(timeout=args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    """``kill NAME...``: send a signal (SIGKILL unless ``-s``) to the main process."""
    containers = _engine(args).containers
    return _each(args, lambda name: containers.get(name).kill(args.signal))


def cmd_rm(args: argparse.Namespace) -> int:
    """``rm NAME...``: remove containers (``-f``: even running ones)."""
    containers = _engine(args).containers
    return _each(args, lambda name: containers.get(name).remove(force=args.force))


def cmd_images(args: argparse.Namespace) -> int:
    """``images``: one row per tag (an untagged image shows <none>), newest first."""
    rows: list[dict[str, Any]] = []
    for image in _engine(args).images.list():
        for tag in image.tags or ("",):
            repository, _, version = tag.rpartition(":")
            rows.append(
                {
                    "id": image.id,
                    "name": tag or image.short_id,
                    "repository": repository or "<none>",
                    "tag": version or "<none>",
                    "created": image.created,
                    "size": image.size,
                }
            )
    if args.quiet:
        seen: set[str] = set()
        for row in rows:
            if row["id"] not in seen:
                seen.add(row["id"])
                print(row["id"] if args.no_trunc else row["id"].split(":", 1)[-1][:12])
    elif args.format == "json":
        _print_json_lines(rows)
    else:
        headers = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
        cells = [
            (
                row["repository"],
                row["tag"],
                row["id"] if args.no_trunc else row["id"].split(":", 1)[-1][:12],
                _ago(row["created"]),
                human_size(row["size"]),
            )
            for row in rows
        ]
        print(table(headers, cells))
    return EXIT_OK


def cmd_rmi(args: argparse.Namespace) -> int:
    """``rmi REF...``: untag images, deleting those left without a tag."""
    images = _engine(args).images
    code = EXIT_OK
    for ref in args.refs:
        try:
            removed = images.remove(ref, force=args.force)
        except PylxcoreError as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
            continue
        for line in removed:
            print(line[:1].upper() + line[1:])
    return code


def cmd_tag(args: argparse.Namespace) -> int:
    """``tag SRC NEW``: give an image another name."""
    _engine(args).images.tag(args.source, args.target)
    return EXIT_OK


def cmd_save(args: argparse.Namespace) -> int:
    """``save IMAGE -o PATH``: an OCI archive (or layout dir) another engine can load."""
    out = _engine(args).images.export(args.image, args.output, format=args.format)
    print(f"Saved {args.image} to {out}")
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """``load -i PATH``: import an OCI layout, oci-archive or docker save archive."""
    image = _engine(args).images.import_(args.input, name=args.tag)
    print(f"Loaded image: {image.name}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """``export IMAGE -o PATH --format F``: an image as LXC, Incus, rootfs or OCI files."""
    out = _engine(args).images.export(args.image, args.output, format=args.format)
    print(f"Exported {args.image} as {args.format} to {out}")
    return EXIT_OK


def image_info(image: BuiltImage) -> dict[str, Any]:
    """An image as plain data, for ``inspect``."""
    config = image.config
    return {
        "id": image.id,
        "tags": list(image.tags),
        "created": image.created,
        "size": image.size,
        "config": {
            "env": config.env,
            "workdir": config.workdir,
            "user": config.user,
            "cmd": list(config.cmd) if config.cmd is not None else None,
            "labels": config.labels,
            "limits": config.limits.to_dict(),
        },
        "layers": [
            {"index": s.index, "instruction": s.instruction, "digest": s.digest, "size": s.size,
             "has_files": s.has_files}
            for s in image.layers
        ],
        "layer_keys": list(image.layer_keys),
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect NAME|REF...``: a JSON array, containers first, then images (as docker)."""
    import json  # noqa: PLC0415  (deferred: the CLI should start fast)
    engine = _engine(args)
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
    try:
        return image_info(engine.images.get(ref))
    except ImageNotFound:
        if kind == "image":
            raise
    raise NotFound(f"no container or image {ref!r} in {engine.root}", name=ref)


def cmd_prune(args: argparse.Namespace) -> int:
    """``prune``: remove stopped containers, untagged images, unused layers."""
    result = _engine(args).prune()
    for title, items in (("Deleted containers:", result.containers), ("Deleted images:", result.images)):
        if items:
            print(title)
            for item in items:
                print(f"  {item}")
    if result.layers:
        print(f"Deleted layers: {len(result.layers)}")
    print(f"Total reclaimed space: {human_size(result.bytes_freed)}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """``stats [NAME...]``: one snapshot of resource use (running containers by default)."""
    engine = _engine(args)
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
        _print_json_lines({"id": c.id, "name": c.name, **attrs.asdict(s)} for c, s in snapshots)
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


# What the positional arguments of each command are, for bash completion.
_COMPLETE_CONTAINERS = ("exec", "logs", "start", "stop", "restart", "kill", "rm", "stats", "inspect")
_COMPLETE_IMAGES = ("run", "rmi", "tag")

_BASH_TEMPLATE = r"""# bash completion for pylxcore; load with: source <(pylxcore completion bash)
_pylxcore_names() {
    # $1: "ps -a" or "images"; the "name" field of each JSON line
    pylxcore "${_pylxcore_root[@]}" $1 --format json 2>/dev/null | sed -n 's/.*"name": "\([^"]*\)".*/\1/p'
}
_pylxcore() {
    local cur="${COMP_WORDS[COMP_CWORD]}" cmd="" i
    _pylxcore_root=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --root) _pylxcore_root=(--root "${COMP_WORDS[i + 1]}"); ((i++)) ;;
            -*) ;;
            *) [[ -z $cmd ]] && cmd="${COMP_WORDS[i]}" ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "@COMMANDS@ @GLOBAL@" -- "$cur"))
        return
    fi
    local opts=""
    case "$cmd" in
@OPTIONS@
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case "$cmd" in
        @CONTAINERS@) COMPREPLY=($(compgen -W "$(_pylxcore_names 'ps -a')" -- "$cur")) ;;
        @IMAGES@) COMPREPLY=($(compgen -W "$(_pylxcore_names images)" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
    esac
}
complete -o default -F _pylxcore pylxcore
"""


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for ``parser``: commands, their options, and
    container or image names (read with ``ps -a``/``images --format json``)."""
    commands = _subcommands(parser)
    global_opts = [o for a in parser._actions for o in a.option_strings]
    cases = []
    for name, sub in commands.items():
        opts = sorted({o for a in sub._actions for o in a.option_strings})
        cases.append(f'        {name}) opts="{" ".join(opts)}" ;;')
    return (
        _BASH_TEMPLATE.replace("@COMMANDS@", " ".join(commands))
        .replace("@GLOBAL@", " ".join(global_opts))
        .replace("@OPTIONS@", "\n".join(cases))
        .replace("@CONTAINERS@", "|".join(_COMPLETE_CONTAINERS))
        .replace("@IMAGES@", "|".join(_COMPLETE_IMAGES))
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cmd_completion(args: argparse.Namespace) -> int:
    """``completion bash``: print a bash completion script."""
    print(bash_completion(build_parser()), end="")
    return EXIT_OK


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one sub-command."""
    parser = argparse.ArgumentParser(
        prog="pylxcore",
        description="Docker's core ideas on LXC, without a daemon: build images, run containers.",
    )
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="the store root (default: $PYLXCORE_ROOT, else /var/lib/pylxcore)")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show tracebacks and the library's debug log")
    parser.add_argument("--version", action="version", version=f"pylxcore {__version__}")
    # The global options are accepted after the command too ("pylxcore ps --root R").
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    def command(
        name: str, func: Command, help_text: str, *, error_code: int = EXIT_ERROR
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func, error_code=error_code)
        return p

    def format_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=("table", "json"), default="table",
                       help="table (default) or json: one JSON object per line")

    p = command("build", cmd_build, "build an image from its YAML file")
    p.add_argument("file", metavar="FILE",
                   help="the image's YAML (or a folder holding image.yaml); its folder is the context")
    p.add_argument("-t", "--tag", action="append", metavar="NAME:TAG",
                   help="name the image (instead of the YAML's name); may be repeated")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the image id")

    p = command("run", cmd_run, "create and start a container", error_code=EXIT_NOT_RUN)
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print its name")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", metavar="NAME", help="the container's name (default: px-<random>)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable (-e KEY takes ours)")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind-mount a host path (:ro read-only)")
    p.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, like 64M")
    p.add_argument("--cpus", type=float, metavar="N", help="CPU limit as a fraction of CPUs, like 0.5")
    p.add_argument("--pids", "--pids-limit", dest="pids", type=int, metavar="N", help="most processes")
    p.add_argument("--network", choices=("none", "host"), default="none", help="none (default) or host")
    p.add_argument("--userns", action="store_true", default=None,
                   help="in a user namespace: its root is an unprivileged host uid")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("-u", "--user", metavar="USER", help="user[:group] (name or number) to run as")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="max-size=SIZE (default 10m; -1: no cap) or max-file=N (default 3): log rotation")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER,
                   help="command and arguments (default: the image's cmd)")

    p = command("ps", cmd_ps, "list containers")
    p.add_argument("-a", "--all", action="store_true", help="all containers, not only running ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    format_option(p)

    p = command("exec", cmd_exec, "run a command in a running container", error_code=EXIT_NOT_RUN)
    p.add_argument("-i", "--interactive", action="store_true", help="feed our stdin to the command")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable (-e KEY takes ours)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory")
    p.add_argument("-u", "--user", metavar="USER", help="user[:group] to run as")
    p.add_argument("name", metavar="NAME")
    p.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER, help="the command and its arguments")

    p = command("logs", cmd_logs, "show a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the container exits")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines (per stream with -f)")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("name", metavar="NAME")

    p = command("start", cmd_start, "start stopped containers")
    p.add_argument("names", metavar="NAME", nargs="+")

    p = command("stop", cmd_stop, "stop running containers (SIGTERM, then SIGKILL)")
    p.add_argument("-t", "--time", type=float, default=10, metavar="SECS",
                   help="seconds to wait before SIGKILL (default 10)")
    p.add_argument("names", metavar="NAME", nargs="+")

    p = command("restart", cmd_restart, "restart containers")
    p.add_argument("-t", "--time", type=float, default=10, metavar="SECS",
                   help="seconds to wait before SIGKILL (default 10)")
    p.add_argument("names", metavar="NAME", nargs="+")

    p = command("kill", cmd_kill, "send a signal to containers")
    p.add_argument("-s", "--signal", type=parse_signal, default=int(signal.SIGKILL), metavar="SIG",
                   help="signal name or number (default KILL)")
    p.add_argument("names", metavar="NAME", nargs="+")

    p = command("rm", cmd_rm, "remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill running containers first")
    p.add_argument("names", metavar="NAME", nargs="+")

    p = command("images", cmd_images, "list images")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    format_option(p)

    p = command("rmi", cmd_rmi, "remove images")
    p.add_argument("-f", "--force", action="store_true", help="untag even when a container uses it")
    p.add_argument("refs", metavar="REF", nargs="+")

    p = command("tag", cmd_tag, "give an image another name")
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="NEW")

    p = command("inspect", cmd_inspect, "show containers or images as JSON")
    p.add_argument("--type", choices=("container", "image"), help="only look for this kind")
    p.add_argument("names", metavar="NAME|REF", nargs="+")

    command("prune", cmd_prune, "remove stopped containers, untagged images and unused layers")

    p = command("save", cmd_save, "write an image as an OCI archive (or layout directory)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="PATH", required=True)
    p.add_argument("--format", choices=("oci-archive", "oci"), default="oci-archive")

    p = command("load", cmd_load, "import an OCI layout, oci-archive or docker save archive")
    p.add_argument("-i", "--input", metavar="PATH", required=True)
    p.add_argument("-t", "--tag", metavar="NAME:TAG", help="name the image (default: the archive's own name)")

    p = command(
        "export",
        cmd_export,
        "write an image for another engine: lxc, incus, rootfs, oci or oci-archive"
        " (unlike docker export, this exports an image, not a container)",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="PATH", required=True)
    p.add_argument("--format", choices=("lxc", "incus", "rootfs", "oci", "oci-archive"), required=True)

    p = command("stats", cmd_stats, "one snapshot of containers' resource use")
    p.add_argument("names", metavar="NAME", nargs="*")
    format_option(p)

    p = command("completion", cmd_completion, "print a shell completion script")
    p.add_argument("shell", choices=("bash",))
    return parser


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command_name == "exec" and not args.command:
            _subcommands(parser)["exec"].error("a command is required after NAME")
    except SystemExit as stop:  # --help, --version, usage errors
        return stop.code if isinstance(stop.code, int) else (EXIT_OK if stop.code is None else EXIT_USAGE)
    handler: Any = None
    if args.debug:
        import logging  # noqa: PLC0415  (deferred: only --debug needs it)

        logger = logging.getLogger("pylxcore")
        old_level = logger.level
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    func: Command = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001  (one line, not a traceback, unless --debug)
        report_error(err, args.debug)
        code: int = args.error_code
        if code == EXIT_NOT_RUN and getattr(err, "detail", None) == PROGRAM_NOT_FOUND:
            code = EXIT_NOT_FOUND
        return code
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(old_level)


def _quiet_stdout() -> None:
    """After a closed pipe (``pylxcore ps | head``): point stdout at /dev/null so
    the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


__all__ = ["main", "build_parser", "table", "human_duration", "human_size", "bash_completion"]
