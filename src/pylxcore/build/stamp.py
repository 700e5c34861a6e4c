"""The up-to-date check of ``pylxcore build``: a cached rebuild without the library.

Rebuilding an unchanged image costs ~1 ms in the library, but a new process
pays ~100 ms just to import attrs, PyYAML and the rest before it can see that.
So the command line, after each successful build, writes a *stamp*: the YAML
text it read, the stat signature (inode, size, mtime, ctime, mode) of every
file the build depended on, and what it produced. The next ``pylxcore build``
of the same file with the same options checks the stamp with the standard
library only (os, json) and, when every input is unchanged and every output is
still in the store, prints what the library would have printed. Anything else
(a changed byte or file, a removed image or layer, a moved tag, another
option, ``--no-cache``) falls through to the library, which rebuilds from its
content-addressed cache as always. It is ``make``'s rule, applied to a build
whose real cache key is a content hash: a stamp can only send a build to the
slow path, never change what the slow path would produce.

Inputs recorded: the YAML file; every ``copy`` source (each path component
from the context down, then the whole tree); the base (the host's busybox,
a ``dir:`` tree, a ``tar:`` file, the apt sources that name a ``debian:``
mirror, the image a ``image:`` base names); and the library's own modules
that compute cache keys. Stamps live in ``ROOT/cache/build-stamps``; prune
removes them (they are only ever a shortcut).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pylxcore.engine import Engine
    from pylxcore.images import BuiltImage
    from pylxcore.spec import Image

FORMAT = 1
STAMPS = os.path.join("cache", "build-stamps")
# The modules whose code decides cache keys and what a build produces.
_OWN = ("spec.py", "build.py", "bases.py", "store.py", "images.py", "_buildstamp.py")


def _sig(path: str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode]


def signature(path: str) -> list[Any]:
    """The stat signatures of ``path`` and, for a directory, of everything below
    it, in a stable order (a rename, add, delete, chmod or write changes it)."""
    out: list[Any] = [path, _sig(path)]
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                out.append([full, _sig(full)])
    return out


def _stamp_path(root: str, yaml_path: str, tags: list[str]) -> str:
    key = "\0".join([yaml_path, *tags]).encode("utf-8", "surrogateescape")
    return os.path.join(root, STAMPS, f"{zlib.crc32(key):08x}.json")


def _own_inputs() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, name) for name in _OWN]


def parse_build_argv(argv: list[str]) -> tuple[str, str, list[str], bool] | None:
    """(root, absolute YAML path, tags, quiet) of ``[--root R] build [-q] [-t T]... FILE``;
    None for any other command line (the full parser handles those)."""
    root = None
    command = None
    file = None
    tags: list[str] = []
    quiet = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root" and i + 1 < len(argv):
            root = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--root="):
            root = arg[len("--root=") :]
        elif command is None:
            if arg != "build":
                return None
            command = arg
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("-t", "--tag") and i + 1 < len(argv):
            tags.append(argv[i + 1])
            i += 1
        elif arg.startswith("--tag="):
            tags.append(arg[len("--tag=") :])
        elif arg.startswith("-") or file is not None:
            return None  # --no-cache, --debug, --help, …: the full command line
        else:
            file = arg
        i += 1
    if command is None or file is None or root == "":
        return None
    root = root or os.environ.get("PYLXCORE_ROOT") or "/var/lib/pylxcore"
    if os.path.isdir(file):
        file = os.path.join(file, "image.yaml")
    return os.path.abspath(root), os.path.abspath(file), tags, quiet


def fast_build(argv: list[str]) -> int | None:
    """Run ``pylxcore build`` from its stamp when nothing changed: print what the
    library would and return 0. None when the library must do the build."""
    parsed = parse_build_argv(argv)
    if parsed is None:
        return None
    root, yaml_path, tags, quiet = parsed
    try:
        with open(_stamp_path(root, yaml_path, tags)) as fh:
            stamp = json.load(fh)
        with open(yaml_path, "rb") as fh:
            text = fh.read()
        if stamp.get("format") != FORMAT or stamp["yaml_path"] != yaml_path or stamp["tags"] != tags:
            return None
        if stamp["yaml"] != text.decode("utf-8"):
            return None
        for recorded in stamp["inputs"]:
            if signature(recorded[0]) != recorded:
                return None
        image_id = stamp["image_id"]
        with open(os.path.join(root, "refs.json")) as fh:
            refs = json.load(fh)
        if any(refs.get(name) != image_id for name in stamp["names"]):
            return None
        with open(os.path.join(root, "images", image_id.split(":", 1)[-1] + ".json")) as fh:
            record = json.load(fh)
        for key in record["layers"]:
            if not os.path.exists(os.path.join(root, "layers", key.split(":", 1)[-1], "meta.json")):
                return None
        for name, base_id in stamp["base_refs"].items():
            if refs.get(name) != base_id:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if quiet:
        print(image_id)
    else:
        for line in stamp["steps"]:
            print(f"{line}  [CACHED]\n  --> 0.00s")
        print(f"Built {image_id[:19]}  (0.00s)")
        for name in stamp["names"]:
            print(f"Successfully tagged {name}")
    sys.stdout.flush()
    return 0


def _inputs(image: Image, engine: Engine) -> tuple[list[str], dict[str, str]]:
    """The paths a build of ``image`` read, and the image refs its base named."""
    from pylxcore.build.bases import busybox_path  # noqa: PLC0415
    from pylxcore.spec import resolve_copy_source  # noqa: PLC0415

    paths = _own_inputs()
    base_refs: dict[str, str] = {}
    kind, _, arg = image.base.partition(":")
    if image.base == "busybox":
        paths.append(os.path.realpath(busybox_path()))
    elif kind in ("dir", "tar"):
        paths.append(os.path.abspath(arg))
    elif kind == "debian":
        paths += ["/etc/apt/sources.list", "/etc/apt/sources.list.d"]
    elif kind == "image":
        base_refs[arg] = engine.images.get(arg).id
    context = os.path.abspath(image.context or ".")
    for layer in image.layers:
        if layer.kind != "copy":
            continue
        # Every component from the context down: a symlink among them may be
        # repointed without anything below it changing.
        part = context
        for comp in layer.src.split("/"):
            part = os.path.join(part, comp)
            paths.append(part)
        paths.append(str(resolve_copy_source(context, layer.src)))
    return paths, base_refs


def write_stamp(engine: Engine, yaml_path: str, tags: list[str], image: Image, built: BuiltImage) -> None:
    """After a successful ``pylxcore build``: record what the next one may skip.
    Best effort: a stamp that cannot be written only costs the next build time."""
    from pathlib import Path  # noqa: PLC0415

    from pylxcore.store import atomic_write  # noqa: PLC0415

    root = str(engine.store.root)
    yaml_path = os.path.abspath(yaml_path)
    try:
        with open(yaml_path, "rb") as fh:
            text = fh.read().decode("utf-8")
        paths, base_refs = _inputs(image, engine)
        stamp = {
            "format": FORMAT,
            "yaml_path": yaml_path,
            "tags": tags,
            "yaml": text,
            "inputs": [signature(yaml_path)] + [signature(p) for p in paths],
            "image_id": built.id,
            "names": [image.name, *tags[1:]],
            "base_refs": base_refs,
            "steps": [
                f"Step {s.index}/{len(built.layers) - 1} : "
                + (s.instruction if len(s.instruction) <= 100 else s.instruction[:99] + "…")
                for s in built.layers
            ],
        }
        path = _stamp_path(root, yaml_path, tags)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(Path(path), json.dumps(stamp))
    except Exception:  # noqa: BLE001  (a shortcut that failed is no error)
        return
