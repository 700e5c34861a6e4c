"""docker's other daily commands: create, wait, pause, unpause, history,
info, version, the ``image``/``container``/``system`` groups, and prunes."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import TYPE_CHECKING, Any

from pylxcore.cli.output import EXIT_ERROR, EXIT_OK, ago, each, report_error, table
from pylxcore.engine import Engine
from pylxcore.errors import PylxcoreError
from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage


def cmd_create(args: argparse.Namespace) -> int:
    """``create IMAGE [CMD...]``: a container, not started; prints its id (as docker)."""
    from pylxcore.cli.run import container_options

    engine = Engine(root=args.root)
    container = engine.containers.create(args.image, args.command or None, **container_options(engine, args))
    print(container.id)
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    """``wait NAME...``: each container's exit code once it has exited."""
    containers = Engine(root=args.root).containers
    code = EXIT_OK
    for name in args.names:
        try:
            exit_code = containers.get(name).wait()
        except PylxcoreError as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
        else:
            print(-1 if exit_code is None else exit_code)
    return code


def cmd_pause(args: argparse.Namespace) -> int:
    """``pause NAME...``: freeze every process of each container."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).pause())


def cmd_unpause(args: argparse.Namespace) -> int:
    """``unpause NAME...``: thaw them."""
    containers = Engine(root=args.root).containers
    return each(args, lambda name: containers.get(name).unpause())


def cmd_rename(args: argparse.Namespace) -> int:
    """``rename OLD NEW``: a container's new name, running or not."""
    Engine(root=args.root).containers.get(args.old).rename(args.new)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    """``history IMAGE``: its steps, newest first, as docker lists them."""
    image = Engine(root=args.root).images.get(args.image)
    rows = []
    for i, step in enumerate(reversed(image.layers)):
        shown = image.id if args.no_trunc else image.short_id
        created_by = step.instruction if args.no_trunc else _cut(step.instruction, 45)
        row = (shown if i == 0 else "<missing>", ago(image.created), created_by, human_size(step.size), "")
        rows.append(row)
    if args.quiet:
        print(image.id if args.no_trunc else image.short_id)
        return EXIT_OK
    print(table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), rows))
    return EXIT_OK


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_version(args: argparse.Namespace) -> int:
    """``version``: pylxcore's, Python's, liblxc's and the kernel's."""
    from pylxcore import __version__

    print(f"pylxcore:  {__version__}")
    print(f"Python:    {platform.python_version()}")
    print(f"liblxc:    {_liblxc_version()}")
    print(f"Kernel:    {platform.release()}")
    print(f"OS/Arch:   {sys.platform}/{platform.machine()}")
    return EXIT_OK


def _liblxc_version() -> str:
    try:
        import lxc  # (python3-lxc: only its version is read)

        return str(lxc.version)
    except ImportError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    """``info``: the store and the host, as ``docker info`` sums them up."""
    from pylxcore import __version__
    from pylxcore.runtime.limits import host_layout

    engine = Engine(root=args.root)
    states = [c.state.value for c in engine.containers.list(all=True)]
    layout = host_layout()
    versions = sorted({kind for kind, _ in layout.controllers.values()})
    lines = [
        f"Containers: {len(states)}",
        f" Running: {states.count('running')}",
        f" Paused: {states.count('paused')}",
        f" Stopped: {len(states) - states.count('running') - states.count('paused')}",
        f"Images: {len(engine.images.list())}",
        f"Server Version: pylxcore {__version__} (no daemon)",
        "Storage Driver: overlay (liblxc rootfs)",
        f"Store Root: {engine.root}",
        f"Cgroup Version: {'+'.join(versions) or 'none'}",
        f"liblxc Version: {_liblxc_version()}",
        f"Kernel Version: {platform.release()}",
        f"Architecture: {platform.machine()}",
        f"CPUs: {os.cpu_count()}",
        f"Total Memory: {human_size(_total_memory(), binary=True)}",
    ]
    print("\n".join(lines))
    return EXIT_OK


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


# -- the groups ------------------------------------------------------------------


def cmd_image(args: argparse.Namespace) -> int:
    """``image ls|rm|prune|inspect|history``: the image commands under docker's group names."""
    from pylxcore.cli import images

    sub = args.image_command
    if sub == "ls":
        return images.cmd_images(args)
    if sub == "rm":
        return images.cmd_rmi(args)
    if sub == "prune":
        return cmd_image_prune(args)
    if sub == "history":
        return cmd_history(args)
    from pylxcore.cli.containers import cmd_inspect

    args.type = "image"
    return cmd_inspect(args)


def cmd_container(args: argparse.Namespace) -> int:
    """``container ls|rm|prune|inspect|…``: the container commands under docker's group names."""
    import importlib

    from pylxcore.cli.parser import COMMANDS

    sub = args.container_command
    if sub == "ls":
        sub = "ps"
    if sub == "prune":
        return cmd_container_prune(args)
    if sub == "inspect":
        args.type = "container"
    module = importlib.import_module(f"pylxcore.cli.{COMMANDS[sub][0]}")
    command: Any = getattr(module, "cmd_" + sub)
    return int(command(args))


def cmd_system(args: argparse.Namespace) -> int:
    """``system df|prune|info``."""
    if args.system_command == "df":
        return cmd_system_df(args)
    if args.system_command == "info":
        return cmd_info(args)
    return cmd_system_prune(args)


# -- prunes ------------------------------------------------------------------------


def confirm(what: list[str], force: bool) -> bool:
    """docker's question before a prune (unless ``force``): y or yes goes on."""
    if force:
        return True
    print("WARNING! This will remove:")
    for line in what:
        print(f"  - {line}")
    print("Are you sure you want to continue? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _prune_containers(engine: Engine) -> list[str]:
    """Remove every stopped container; returns their ids."""
    removed = []
    for c in engine.containers.list(all=True):
        if c.state.value in ("exited", "created"):
            try:
                c.remove()
            except PylxcoreError:
                continue  # started or removed meanwhile
            removed.append(c.id)
    return removed


def _prune_images(engine: Engine, *, all_unused: bool) -> tuple[list[str], list[str], int]:
    """Remove dangling images (untagged, no container uses them), or with
    ``all_unused`` every image no container uses, and the layers only they
    used. Returns (names untagged, image ids deleted, bytes freed)."""
    used = {c.image_id for c in engine.containers.list(all=True)}
    untagged: list[str] = []
    deleted: list[str] = []
    freed = 0
    for image in engine.images.list():
        if image.id in used or (image.tags and not all_unused):
            continue
        sizes = {step.digest: step.size for step in image.layers}
        for ref in image.tags or (image.id,):
            try:
                lines = engine.images.remove(ref)
            except PylxcoreError:
                continue  # used or removed meanwhile
            for line in lines:
                word, _, rest = line.partition(" ")
                if word == "untagged":
                    untagged.append(rest)
                elif rest.startswith("layer "):
                    freed += sizes.get(rest.removeprefix("layer "), 0)
                else:
                    deleted.append(rest)
    return untagged, deleted, freed


def _print_prune(title: str, items: list[str]) -> None:
    if items:
        print(title)
        for item in items:
            print(item)
        print()


def cmd_container_prune(args: argparse.Namespace) -> int:
    """``container prune [-f]``: remove every stopped container."""
    if not confirm(["all stopped containers"], args.force):
        return EXIT_OK
    engine = Engine(root=args.root)
    _print_prune("Deleted Containers:", _prune_containers(engine))
    print("Total reclaimed space: 0B")
    return EXIT_OK


def cmd_image_prune(args: argparse.Namespace) -> int:
    """``image prune [-a] [-f]``: remove dangling images (``-a``: every unused one)."""
    what = "all dangling images"
    if args.all:
        what = "all images without at least one container associated to them"
    if not confirm([what], args.force):
        return EXIT_OK
    untagged, deleted, freed = _prune_images(Engine(root=args.root), all_unused=args.all)
    _print_prune("Deleted Images:", [f"untagged: {t}" for t in untagged] + [f"deleted: {d}" for d in deleted])
    print(f"Total reclaimed space: {human_size(freed)}")
    return EXIT_OK


def cmd_system_prune(args: argparse.Namespace) -> int:
    """``system prune [-a] [-f] [--volumes]``: stopped containers, then dangling
    (``-a``: unused) images and the layers nothing uses."""
    what = ["all stopped containers"]
    if args.volumes:
        what.append("all volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if args.all
                else "all dangling images")
    if not confirm(what, args.force):
        return EXIT_OK
    engine = Engine(root=args.root)
    _print_prune("Deleted Containers:", _prune_containers(engine))
    if args.volumes:
        volumes, volume_bytes = engine.volumes.prune()
        _print_prune("Deleted Volumes:", volumes)
    untagged, deleted, freed = _prune_images(engine, all_unused=args.all)
    if args.volumes:
        freed += volume_bytes
    _print_prune("Deleted Images:", [f"untagged: {t}" for t in untagged] + [f"deleted: {d}" for d in deleted])
    print(f"Total reclaimed space: {human_size(freed)}")
    return EXIT_OK


def cmd_system_df(args: argparse.Namespace) -> int:
    """``system df``: what images and containers take on disk, and what a prune would free."""
    from pylxcore.store import dir_size

    engine = Engine(root=args.root)
    images: list[BuiltImage] = engine.images.list()
    containers = engine.containers.list(all=True)
    used_images = {c.image_id for c in containers}
    layer_sizes: dict[str, int] = {}
    for image in images:
        for step in image.layers:
            layer_sizes[step.digest] = step.size
    used_layers = {k for image in images if image.id in used_images for k in image.layer_keys}
    image_total = sum(layer_sizes.values())
    image_free = sum(size for key, size in layer_sizes.items() if key not in used_layers)
    sizes = {c.name: dir_size(c.dir / "upper") for c in containers}
    running = [c for c in containers if c.state.value in ("running", "paused")]
    ctr_total = sum(sizes.values())
    ctr_free = sum(size for name, size in sizes.items() if name not in {c.name for c in running})
    rows = [
        ("Images", str(len(images)), str(len({i.id for i in images} & used_images)), human_size(image_total),
         _reclaimable(image_free, image_total)),
        ("Containers", str(len(containers)), str(len(running)), human_size(ctr_total),
         _reclaimable(ctr_free, ctr_total)),
    ]
    volumes = engine.volumes.list()
    if volumes:
        vol_sizes = {v.name: dir_size(v.mountpoint) for v in volumes}
        in_use = {v.name for v in volumes if engine.volumes.users(v.name)}
        vol_total = sum(vol_sizes.values())
        vol_free = sum(size for name, size in vol_sizes.items() if name not in in_use)
        rows.append(("Local Volumes", str(len(volumes)), str(len(in_use)), human_size(vol_total),
                     _reclaimable(vol_free, vol_total)))
    print(table(("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"), rows))
    return EXIT_OK


def _reclaimable(free: int, total: int) -> str:
    return f"{human_size(free)} ({100 * free // total if total else 0}%)"
