"""The commands on images: build, images, rmi, tag, save, load, export, and prune."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pylxcore.cli.output import EXIT_ERROR, EXIT_OK, ago, print_json_lines, report_error, table
from pylxcore.engine import Engine
from pylxcore.errors import BuildError, PylxcoreError, SpecError
from pylxcore.spec import Image
from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage


def cmd_build(args: argparse.Namespace) -> int:
    """``build FILE``: build an image from its YAML (the file's folder is the context)."""
    from pylxcore.build.recorder import note_spec  # (only build is recorded)

    tags: list[str] = args.tag or []
    path = args.file
    dockerfile = _dockerfile(args)
    if dockerfile is not None:
        engine = Engine(root=args.root)  # (a FROM of one of its images takes that image's config)
        image = _load_dockerfile(args, dockerfile, tags, engine)
    else:
        if os.path.isdir(path):
            path = os.path.join(path, "image.yaml")
        image = Image.load(path)
        note_spec(path, image)  # for the record a replay answers the next identical build from
        engine = Engine(root=args.root)
    if tags:
        image = attrs.evolve(image, name=tags[0])
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


def _dockerfile(args: argparse.Namespace) -> str | None:
    """The Dockerfile a ``build`` names, or None for a YAML build.

    Docker's form: ``-f FILE`` (relative to here), else ``CONTEXT/Dockerfile``
    for a folder without image.yaml; a file argument that is not YAML is a Dockerfile too.
    """
    if args.dockerfile:
        return str(args.dockerfile)
    path = str(args.file)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "image.yaml")):
            return None
        return os.path.join(path, "Dockerfile")
    if path.endswith((".yaml", ".yml")):
        return None
    return path


def _load_dockerfile(args: argparse.Namespace, dockerfile: str, tags: list[str], engine: Engine) -> Image:
    """The Image of a Dockerfile build, noted for the build record (which keeps its inputs)."""
    from pylxcore.build.recorder import note_spec
    from pylxcore.errors import SpecError

    context = args.file if os.path.isdir(args.file) else os.path.dirname(os.path.abspath(args.file))
    build_args: dict[str, str] = {}
    for item in args.build_arg:
        key, eq, value = item.partition("=")
        if not eq:
            # Docker's rule: "--build-arg NAME" takes NAME from this environment.
            if key not in os.environ:
                continue
            value = os.environ[key]
        build_args[key] = value
    if args.dockerfile and args.file and not os.path.isdir(args.file):
        raise SpecError(f"the build context {args.file!r} is not a folder", key="context")

    from pylxcore.spec.dockerfile import read_dockerfile

    def load(inputs: list[str] | None = None) -> Image:
        name = tags[0] if tags else "dockerfile:latest"
        return read_dockerfile(
            dockerfile,
            lambda values: Image(name, **values),
            build_args=build_args,
            target=args.target,
            context=context,
            inputs=inputs,
            base_config=lambda ref: engine.images.get(ref).config,
        )

    inputs: list[str] = []
    image = load(inputs)
    # For the build record: the Dockerfile is read again when it is saved, and
    # must give this image; the .dockerignore's bytes (or absence) are kept.
    note_spec(dockerfile, image, reload=load, inputs=inputs)
    return image


def _short(image_id: str, no_trunc: bool) -> str:
    return image_id if no_trunc else image_id.split(":", 1)[-1][:12]


def cmd_images(args: argparse.Namespace) -> int:
    """``images``: one row per tag (an untagged image shows <none>), newest first."""
    from pylxcore.cli.imagefilter import select  # (docker's --filter)

    rows: list[dict[str, Any]] = []
    collection = Engine(root=args.root).images
    for image, tags in select(collection.list(), args.filter, collection):
        for tag in tags or ("",):
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
    elif args.format != "table":
        from pylxcore.cli.gotemplate import render_table  # (a Go template, as docker's --format)

        docker_rows = [_docker_row(row, args.no_trunc) for row in rows]
        text = render_table(args.format, docker_rows, {"ID": "IMAGE ID"})
        if text:
            print(text)
    else:
        headers = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
        cells = [
            (row["repository"], row["tag"], _short(row["id"], args.no_trunc), ago(row["created"]),
             human_size(row["size"]))
            for row in rows
        ]
        print(table(headers, cells))
    return EXIT_OK


def _docker_row(row: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    """One ``images --format`` row, its fields as docker names them."""
    return {"ID": _short(row["id"], no_trunc), "Repository": row["repository"], "Tag": row["tag"],
            "CreatedSince": ago(row["created"]), "Size": human_size(row["size"])}


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
    """``save IMAGE [-o PATH]``: an OCI or docker archive (or OCI layout dir)
    another engine can load; without ``-o`` (or with ``-o -``) it streams to
    stdout, as ``docker save`` does, unless stdout is a terminal."""
    engine = Engine(root=args.root)
    if args.output not in (None, "-"):
        out = engine.images.export(args.image, args.output, format=args.format)
        print(f"Saved {args.image} to {out}")
        return EXIT_OK
    if args.format not in ("oci-archive", "docker-archive"):
        raise SpecError(f"a {args.format} export is not a stream: give it with -o PATH", key="output")
    if args.output is None and sys.stdout.isatty():
        raise SpecError("refusing to write an archive to a terminal: give -o PATH, or redirect", key="output")
    sys.stdout.flush()
    engine.images.export(args.image, sys.stdout.buffer, format=args.format)
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """``load [-i PATH]``: import an OCI layout, oci-archive or docker save
    archive; without ``-i`` (or with ``-i -``) from stdin. It says the name it
    gave the image: ``-t``'s, else the archive's own."""
    from pylxcore.transfer import oci_import  # (for the name the image got)

    engine = Engine(root=args.root)
    if args.input in (None, "-"):
        if args.input is None and sys.stdin.isatty():
            raise SpecError("no archive: give -i PATH, or pipe one to stdin", key="input")
        image, tag = oci_import.import_stream(engine, sys.stdin.buffer, name=args.tag)
    else:
        image, tag = oci_import.import_archive(engine, Path(args.input), name=args.tag)
    print(f"Loaded image: {tag}" if tag else f"Loaded image ID: {image.id}")
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
            "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
            "cmd": list(config.cmd) if config.cmd is not None else None,
            "labels": config.labels,
            "limits": config.limits.to_dict(),
            "exposed_ports": list(config.exposed_ports),
            "volumes": list(config.volumes),
            "stop_signal": config.stop_signal,
            "healthcheck": config.healthcheck.to_dict() if config.healthcheck is not None else None,
        },
        "layers": [
            {"index": s.index, "instruction": s.instruction, "digest": s.digest, "size": s.size,
             "has_files": s.has_files}
            for s in image.layers
        ],
        "layer_keys": list(image.layer_keys),
    }
