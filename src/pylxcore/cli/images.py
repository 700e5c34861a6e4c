"""The commands on images: build, images, rmi, tag, save, load, export, and prune."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import attrs

from pylxcore.cli.output import EXIT_ERROR, EXIT_OK, ago, print_json_lines, report_error, table
from pylxcore.engine import Engine
from pylxcore.errors import BuildError, PylxcoreError
from pylxcore.spec import Image
from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage


def cmd_build(args: argparse.Namespace) -> int:
    """``build FILE``: build an image from its YAML (the file's folder is the context)."""
    from pylxcore.build.recorder import note_spec  # (only build is recorded)

    path = args.file
    if os.path.isdir(path):
        path = os.path.join(path, "image.yaml")
    image = Image.load(path)
    note_spec(path, image)  # for the record a replay answers the next identical build from
    tags: list[str] = args.tag or []
    if tags:
        image = attrs.evolve(image, name=tags[0])
    engine = Engine(root=args.root)
    try:
        built = engine.images.build(image, no_cache=args.no_cache, progress=not args.quiet)
    except BuildError as err:
        if args.quiet:  # the output was not shown as it ran: show its end now
            for line in getattr(err, "output_tail", []):
                print(f"  | {line}", file=sys.stderr)
        raise
    for extra in tags[1:]:
        engine.images.tag(built.id, extra)
    if args.quiet:
        print(built.id)
    else:
        for name in [image.name, *tags[1:]]:
            print(f"Successfully tagged {name}")
    return EXIT_OK


def _short(image_id: str, no_trunc: bool) -> str:
    return image_id if no_trunc else image_id.split(":", 1)[-1][:12]


def cmd_images(args: argparse.Namespace) -> int:
    """``images``: one row per tag (an untagged image shows <none>), newest first."""
    rows: list[dict[str, Any]] = []
    for image in Engine(root=args.root).images.list():
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
                print(_short(row["id"], args.no_trunc))
    elif args.format == "json":
        print_json_lines(rows)
    else:
        headers = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
        cells = [
            (row["repository"], row["tag"], _short(row["id"], args.no_trunc), ago(row["created"]),
             human_size(row["size"]))
            for row in rows
        ]
        print(table(headers, cells))
    return EXIT_OK


def cmd_rmi(args: argparse.Namespace) -> int:
    """``rmi REF...``: untag images, deleting those left without a tag."""
    images = Engine(root=args.root).images
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
    Engine(root=args.root).images.tag(args.source, args.target)
    return EXIT_OK


def cmd_save(args: argparse.Namespace) -> int:
    """``save IMAGE -o PATH``: an OCI archive (or layout dir) another engine can load."""
    out = Engine(root=args.root).images.export(args.image, args.output, format=args.format)
    print(f"Saved {args.image} to {out}")
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """``load -i PATH``: import an OCI layout, oci-archive or docker save archive."""
    image = Engine(root=args.root).images.import_(args.input, name=args.tag)
    print(f"Loaded image: {image.name}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """``export IMAGE -o PATH --format F``: an image as LXC, Incus, rootfs or OCI files."""
    out = Engine(root=args.root).images.export(args.image, args.output, format=args.format)
    print(f"Exported {args.image} as {args.format} to {out}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """``prune``: remove stopped containers, untagged images, unused layers."""
    result = Engine(root=args.root).prune()
    for title, items in (("Deleted containers:", result.containers), ("Deleted images:", result.images)):
        if items:
            print(title)
            for item in items:
                print(f"  {item}")
    if result.layers:
        print(f"Deleted layers: {len(result.layers)}")
    print(f"Total reclaimed space: {human_size(result.bytes_freed)}")
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
