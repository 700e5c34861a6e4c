"""``Container.commit``: a container's writable layer as a new image (``docker commit``).

The writable layer is overlayfs's upper dir, the same format as the
store's layers (whiteouts and opaque dirs included), so it is copied as it
is (``cp -a``: devices, xattrs, hard links kept) and becomes one more
layer on top of the image's. What the library made in it (the targets of
bind mounts, a network's /etc/hosts) is not the container's and is left
out; a user-namespaced container's files get back the container's ids.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pylxcore.errors import SpecError, StorageError
from pylxcore.runtime.changes import NETWORK_FILES
from pylxcore.spec import validate_image_ref
from pylxcore.store import canonical_json, rmtree, sha256_hex
from pylxcore.store.records import HistoryStep, ImageRecord

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage
    from pylxcore.runtime.container import Container

# The Dockerfile instructions ``docker commit --change`` takes.
CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
                       "VOLUME", "WORKDIR")


def _argv(rest: str) -> list[str]:
    """CMD/ENTRYPOINT's argument: a JSON list, else a shell form (``/bin/sh -c``)."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _pairs(rest: str, key: str) -> dict[str, str]:
    """``ENV``/``LABEL`` arguments: ``k=v k2="v 2"``, or the old ``k v`` form."""
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        return {words[0]: rest.split(None, 1)[1] if len(words) > 1 else ""}
    out = {}
    for word in words:
        if "=" not in word:
            raise SpecError(f"expected NAME=VALUE, got {word!r}", key=key)
        k, v = word.split("=", 1)
        out[k] = v
    return out


def apply_changes(config: dict[str, Any], changes: Sequence[str] | str | None) -> dict[str, Any]:
    """``config`` (an image record's) with Dockerfile instructions applied,
    as ``docker commit --change`` applies them. Raises SpecError (an
    instruction it does not take, or a bad argument)."""
    if changes is None:
        return config
    lines = [changes] if isinstance(changes, str) else list(changes)
    out = dict(config)
    for i, line in enumerate(lines):
        key = f"changes[{i}]"
        if not isinstance(line, str) or not line.strip():
            raise SpecError(f"expected a Dockerfile instruction, got {line!r}", key=key)
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word not in CHANGE_INSTRUCTIONS or word == "ONBUILD":
            takes = ", ".join(w for w in CHANGE_INSTRUCTIONS if w != "ONBUILD")
            raise SpecError(f"{word} is not an instruction commit can apply (it takes {takes})", key=key)
        if word == "CMD":
            out["cmd"] = _argv(rest)
        elif word == "ENTRYPOINT":
            out["entrypoint"] = _argv(rest)
        elif word == "ENV":
            out["env"] = {**(out.get("env") or {}), **_pairs(rest, key)}
        elif word == "LABEL":
            out["labels"] = {**(out.get("labels") or {}), **_pairs(rest, key)}
        elif word == "WORKDIR":
            out["workdir"] = rest
        elif word == "USER":
            out["user"] = rest
        elif word == "STOPSIGNAL":
            out["stop_signal"] = rest
        elif word == "EXPOSE":
            ports = [p if "/" in p else f"{p}/tcp" for p in rest.split()]
            out["exposed_ports"] = sorted({*(out.get("exposed_ports") or ()), *ports})
        elif word == "VOLUME":
            vols = _argv(rest) if rest.startswith("[") else rest.split()
            out["volumes"] = sorted({*(out.get("volumes") or ()), *vols})
    return out


def split_command(argv: Sequence[str], image_config: dict[str, Any]) -> tuple[list[str] | None, list[str]]:
    """A container's argv as docker keeps it: (entrypoint, cmd). The image's
    entrypoint when the argv starts with it, else none (it was replaced)."""
    entry = list(image_config.get("entrypoint") or ())
    if entry and list(argv[: len(entry)]) == entry:
        return entry, list(argv[len(entry):])
    return None, list(argv)


def _container_config(container: Container, image_config: dict[str, Any]) -> dict[str, Any]:
    """The image config docker commit writes: the image's, with what the
    container was created with (its env, workdir, user, labels, command)."""
    meta = container._meta()
    config = dict(image_config)
    config["env"] = dict(meta.env)
    config["workdir"] = meta.workdir
    config["user"] = meta.user
    config["labels"] = {**(image_config.get("labels") or {}), **meta.labels}
    entry, config["cmd"] = split_command(meta.command, image_config)
    if entry is None:
        config.pop("entrypoint", None)
    return config


def _stage_layer(container: Container, staged: Path) -> None:
    """Copy the writable layer to ``staged`` without what the library made in it."""
    upper = container.dir / "upper"
    proc = subprocess.run(["cp", "-a", "--", str(upper), str(staged)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise StorageError(f"cannot copy the writable layer of {container.name!r}: {proc.stderr.strip()}",
                           path=str(upper))
    meta = container._meta()
    made = [m.target for m in meta.mounts]
    if meta.extra.get("networks"):
        made += NETWORK_FILES
    for target in made:
        path = staged / target.lstrip("/")
        try:
            if path.is_symlink() or path.is_file() and path.stat().st_size == 0:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError:
            continue
    if meta.userns:
        from pylxcore.runtime.userns import subordinate_ids

        ids = subordinate_ids()
        for dirpath, dirnames, filenames in os.walk(staged):
            # Each directory once, as the dirpath of its own walk (a symlink
            # to one is no dirpath: it is a name).
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for entry in [dirpath, *(os.path.join(dirpath, n) for n in [*filenames, *links])]:
                st = os.lstat(entry)
                os.chown(entry, max(st.st_uid - ids[0], 0), max(st.st_gid - ids[2], 0),
                         follow_symlinks=False)


def commit(
    container: Container,
    repository: str | None = None,
    tag: str | None = None,
    *,
    message: str | None = None,
    author: str | None = None,
    changes: Sequence[str] | str | None = None,
    pause: bool = True,
) -> BuiltImage:
    """A new image: the container's image with its writable layer on top
    (whiteouts kept: what it deleted stays deleted) and its config (env,
    workdir, user, labels, command) with ``changes`` (Dockerfile
    instructions: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
    VOLUME, WORKDIR) applied. Tagged ``repository:tag`` when a repository
    is given. A running container is paused meanwhile (``pause=False``: not).
    Raises SpecError (a bad name or change), ImageNotFound (its image
    was removed), StorageError."""
    engine = container._collection._engine
    store = engine.store
    name = validate_image_ref(f"{repository}:{tag}" if tag else repository) if repository else None
    base = store.get_image_record(container.image_id)
    meta = container._meta()
    base_config = base.config if base is not None else {}
    config = apply_changes(_container_config(container, base_config), changes)
    frozen_here = False
    if pause and container.status() == "running":
        container.freeze()
        frozen_here = True
    staged = store.staging_dir("commit-ctr")
    try:
        try:
            _stage_layer(container, staged / "fs")
        finally:
            if frozen_here:
                container.unfreeze()
        created = time.time()
        key = "sha256:" + sha256_hex(canonical_json({"commit": container.id, "at": created,
                                                     "nonce": os.urandom(8).hex()}))
        layers = [*meta.layers, key]
        instruction = f"COMMIT {container.name}" + (f": {message}" if message else "")
        with store.lock("gc", shared=True):
            store.commit_layer(key, staged / "fs", parent=meta.layers[-1] if meta.layers else None,
                               instruction=instruction)
            image_id = "sha256:" + sha256_hex(canonical_json({"layers": layers, "config": config}))
            history = (*(base.history if base is not None else ()), HistoryStep(instruction, key))
            origin = {k: v for k, v in (("author", author), ("comment", message)) if v}
            record = ImageRecord(
                id=image_id,
                layers=tuple(layers),
                chain=key,
                config=config,
                history=history,
                base=base.base if base is not None else "commit",
                created=created,
                origin=origin,
            )
            store.put_image(record)
            if name is not None:
                with store.lock("refs"):
                    refs = store.read_refs()
                    refs[name] = image_id
                    store.write_refs(refs)
    finally:
        rmtree(staged)
    return engine.images.get(image_id)
