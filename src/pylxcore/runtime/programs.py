"""What a container runs: its command line, and whether that program is in its tree before it starts."""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Any, Sequence, Union

from pylxcore.errors import SpecError, StorageError
from pylxcore.runtime.lxcconfig import DEFAULT_PATH
from pylxcore.runtime.rootfs import LayerStack
from pylxcore.spec import validate
from pylxcore.store import Store

Command = Union[str, Sequence[str], None]
# LXCError.detail when a container's program is not in it (the CLI exits 127).
PROGRAM_NOT_FOUND = "program not found"


def command_argv(command: Command, default: Sequence[str] | None) -> list[str]:
    """The argv of ``command`` (a string runs under ``/bin/sh -c``), else
    ``default`` (the image's cmd). Raises SpecError for a bad command, or
    when there is neither."""
    argv = validate.command(command, "command")
    if argv is None:
        if not default:
            raise SpecError("no command given and the image has no cmd", key="command")
        return list(default)
    return list(argv)


def executable_found(meta: dict[str, Any], upper: Path, store: Store) -> bool:
    """Whether the command's program exists in the container's tree (its
    writable layer over the image's), looked up the way execvp would: a name
    with a slash as a path (from the workdir), else along $PATH. A program
    under a bind mount is taken on trust: the mount is not there yet."""
    program = meta["command"][0]
    if "/" in program:
        candidates = [posixpath.join(meta["workdir"], program)]
    else:
        path = meta["env"].get("PATH", DEFAULT_PATH)
        candidates = [posixpath.join(d or meta["workdir"], program) for d in path.split(":")]
    targets = [posixpath.normpath(m["target"]) for m in meta["mounts"]]
    for candidate in candidates:
        normal = posixpath.normpath(candidate)
        if any(normal == t or normal.startswith(t.rstrip("/") + "/") for t in targets):
            return True
    # The common case first, with plain strings (this runs at every start):
    # the program as a file or link in the topmost layer that has the path.
    dirs = [str(upper), *(str(store.layer_dir(k) / "fs") for k in reversed(meta["layers"]))]
    for candidate in candidates:
        for layer in dirs:
            try:
                mode = os.lstat(layer + posixpath.normpath(candidate)).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                return True
            break  # a dir or a whiteout: it hides the layers below
    # Else the path may run through symlinked dirs (/bin -> usr/bin): resolve
    # it as the container will see it.
    stack = LayerStack([Path(p) for p in dirs])
    for candidate in candidates:
        try:
            real = stack.lookup(stack.resolve(candidate))
        except StorageError:
            return True  # a symlink loop: let the kernel say so
        if real is not None and not real.is_dir():
            return True
    return False
