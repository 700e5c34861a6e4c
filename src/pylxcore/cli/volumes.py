"""``volume create|ls|rm|inspect|prune``: named volumes, as docker's commands."""

from __future__ import annotations

import argparse
import json

from pylxcore.cli.output import EXIT_ERROR, EXIT_OK, report_error
from pylxcore.engine import Engine
from pylxcore.errors import PylxcoreError, SpecError
from pylxcore.spec.sizes import human_size


def cmd_volume(args: argparse.Namespace) -> int:
    """``volume SUBCOMMAND``."""
    volumes = Engine(root=args.root).volumes
    sub = args.volume_command
    if sub == "create":
        from pylxcore.cli.run import parse_labels

        print(volumes.create(args.name, labels=parse_labels(args.label)).name)
        return EXIT_OK
    if sub == "ls":
        return _ls(args)
    if sub == "prune":
        from pylxcore.cli.parity import confirm

        if not confirm(["all local volumes not used by at least one container"], args.force):
            return EXIT_OK
        removed, freed = volumes.prune()
        if removed:
            print("Deleted Volumes:")
            print("\n".join(removed))
            print()
        print(f"Total reclaimed space: {human_size(freed)}")
        return EXIT_OK
    code = EXIT_OK
    docs = []
    for name in args.names:
        try:
            if sub == "rm":
                volumes.remove(name, force=args.force)
                print(name)
            else:
                docs.append(volumes.get(name).inspect())
        except PylxcoreError as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
    if sub == "inspect":
        if args.format is not None:
            from pylxcore.cli.gotemplate import render

            for doc in docs:
                print(render(args.format, doc))
        else:
            print(json.dumps(docs, indent=4))
    return code


def _ls(args: argparse.Namespace) -> int:
    volumes = Engine(root=args.root).volumes
    rows = []
    for volume in volumes.list():
        keep = True
        for item in args.filter:
            key, _, value = item.partition("=")
            if key == "dangling":
                keep &= (not volumes.users(volume.name)) == (value.lower() in ("true", "1"))
            elif key == "name":
                keep &= value in volume.name
            elif key == "label":
                k, eq, v = value.partition("=")
                keep &= k in volume.labels and (not eq or volume.labels[k] == v)
            else:
                why = f"invalid filter {key!r} (volume ls takes dangling, name, label)"
                raise SpecError(why, key="--filter")
        if keep:
            rows.append({"Driver": "local", "Name": volume.name, "Mountpoint": str(volume.mountpoint),
                         "Labels": ",".join(f"{k}={v}" for k, v in volume.labels.items()), "Scope": "local"})
    if args.quiet:
        for row in rows:
            print(row["Name"])
        return EXIT_OK
    from pylxcore.cli.gotemplate import render_table

    fmt = args.format or "table {{.Driver}}\t{{.Name}}"
    text = render_table(fmt, rows, {"Name": "VOLUME NAME"})
    if text:
        print(text)
    return EXIT_OK
