"""``run`` and ``exec``: their options as the library's values, the output streamed, Ctrl-C passed on."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

from pylxcore.cli.attach import follow_logs
from pylxcore.cli.networks import publish_options
from pylxcore.cli.output import EXIT_ERROR, EXIT_OK
from pylxcore.engine import Engine
from pylxcore.errors import ContainerNotFound, PylxcoreError, SpecError
from pylxcore.spec import Limits, Mount

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container
    from pylxcore.spec.healthcheck import Healthcheck


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``-e KEY=VALUE`` pairs; a bare ``-e KEY`` takes KEY's value from our
    environment. The library checks the names and values."""
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
    """``-v SRC:DST[:ro|rw]``; a relative SRC is taken from the current
    folder; a SRC that is a name (no ``/``, not ``.``) is a volume's."""
    source, sep, rest = text.partition(":")
    if sep and source and "/" not in source and not source.startswith("."):
        target, _, mode = rest.partition(":")
        if mode not in ("", "ro", "rw"):
            raise SpecError(f"expected NAME:TARGET[:ro|rw], got {text!r}", key="mount")
        return Mount(volume=source, target=target, read_only=mode == "ro")
    if sep and source and not source.startswith("/"):
        text = os.path.abspath(source) + ":" + rest
    return Mount.parse(text)


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


def parse_health(args: argparse.Namespace) -> Healthcheck | None:
    """``--health-cmd`` and its options (Docker's) as a Healthcheck;
    ``--no-healthcheck``: NONE; else None (the image's). The library checks the values."""
    from pylxcore.spec.healthcheck import Healthcheck

    if args.no_healthcheck:
        return Healthcheck(["NONE"])
    if args.health_cmd is None:
        return None
    return Healthcheck(
        ("CMD-SHELL", args.health_cmd),
        interval=args.health_interval,
        timeout=args.health_timeout,
        retries=args.health_retries,
        start_period=args.health_start_period,
    )


def _limits(args: argparse.Namespace) -> Limits | None:
    values = {key: getattr(args, key) for key in ("memory", "cpus", "pids") if getattr(args, key) is not None}
    return Limits(**values) if values else None


def container_options(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    """``run``'s (and ``create``'s) options as the library's keyword arguments."""
    return {
        "name": args.name,
        "env": parse_env(args.env),
        "mounts": [parse_volume(v) for v in args.volume],
        "limits": _limits(args),
        "workdir": args.workdir,
        "user": args.user,
        "entrypoint": args.entrypoint,
        "userns": args.userns,
        **parse_log_opts(args.log_opt),
        "restart": args.restart,
        "healthcheck": parse_health(args),
        "labels": parse_labels(args.label),
        "tty": args.tty,
        "stdin": args.interactive,
        "stop_signal": args.stop_signal,
        "stop_timeout": args.stop_timeout,
        "read_only": args.read_only,
        "console_size": _our_size() if args.tty else None,
        "tmpfs": dict(item.partition(":")[::2] for item in args.tmpfs),  # docker's DIR[:OPTIONS]
        **publish_options(engine, args),
    }


def _our_size() -> tuple[int, int] | None:
    """Our terminal's size (rows, columns), for a container's from its
    start, as ``docker run -t`` sets it; None when we are on none."""
    for fd in (0, 1):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines and size.columns:
            return size.lines, size.columns
    return None


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``-l KEY=VALUE`` labels (a bare KEY: an empty value, as docker); the library checks them."""
    return {key: value for key, _, value in (item.partition("=") for item in items)}


def cmd_run(args: argparse.Namespace) -> int:
    """``run IMAGE [CMD...]``: create and start a container; attached unless ``-d``."""
    engine = Engine(root=args.root)
    options = container_options(engine, args)
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
    if args.interactive or args.tty:
        from pylxcore.cli.terminal import attach_container, wait_removed

        if args.tty and "TERM" in os.environ:
            options["env"].setdefault("TERM", os.environ["TERM"])
        # Removed by its supervisor when it exits (its code comes first):
        # detached by the keys, it runs on without us.
        container = engine.containers.run(args.image, command, detach=True, remove=args.rm, **options)
        attached = attach_container(container, interactive=args.interactive, detach_keys=args.detach_keys)
        if args.rm:
            wait_removed(container)
        return attached
    # Attached: start it detached (so nothing removes it before we read its
    # exit code), stream its output as it comes, then wait. Ctrl-C goes to its
    # process, whose output and exit code are then ours; a third one stops
    # waiting (130).
    container = engine.containers.run(args.image, command, detach=True, remove=False, **options)
    code: int | None
    try:
        follow_logs(container, on_interrupt=lambda: _interrupt(container))
        code = container.wait()
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
    from pylxcore.cli.terminal import relay

    container = Engine(root=args.root).containers.get(args.name)
    env = parse_env(args.env)
    if args.tty and "TERM" in os.environ:
        env.setdefault("TERM", os.environ["TERM"])
    if args.command and container.status() == "running":
        from pylxcore.runtime.programs import check_exec  # (docker's 126, with the program named)

        check_exec(container, args.command, env, args.workdir)
    try:
        stream = container.exec_stream(
            args.command, env=env, workdir=args.workdir, user=args.user, stdin=args.interactive, tty=args.tty
        )
    except SpecError as err:
        if err.key != "user":
            raise
        # docker exec: a user the container lacks cannot start the process (126).
        from pylxcore.errors import LXCError
        from pylxcore.runtime.programs import EXEC_FAILED

        raise LXCError(str(err), operation="exec", container=container.name, detail=EXEC_FAILED) from None
    return relay(stream, interactive=args.interactive, tty=args.tty)
