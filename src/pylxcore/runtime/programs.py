"""What a container runs: its command line, and whether that program is in its tree before it starts."""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

from pylxcore.errors import SpecError, StorageError
from pylxcore.runtime.lxcconfig import DEFAULT_PATH
from pylxcore.runtime.rootfs import LayerStack
from pylxcore.spec import validate
from pylxcore.store import Store
from pylxcore.store.records import ContainerRecord

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

Command = Union[str, Sequence[str], None]
# LXCError.detail when a container's program is not in it (the CLI exits 127).
PROGRAM_NOT_FOUND = "program not found"
# LXCError.detail when it is there but cannot be executed (the CLI exits 126).
PROGRAM_NOT_EXECUTABLE = "program not executable"
# LXCError.detail when an exec's program cannot start, for either reason
# (docker exec exits 126 for both).
EXEC_FAILED = "exec failed"


def command_argv(
    command: Command, config: Mapping[str, Any] | None, *, entrypoint: Command = None
) -> list[str]:
    """What a container runs, as Docker decides it: the entrypoint, then the
    arguments ``command`` (a string runs under ``/bin/sh -c``), else the
    image's cmd. ``config`` is the image record's config (None: no image, as for exec).

    ``entrypoint`` None keeps the image's entrypoint; anything else replaces
    it and, as ``docker run --entrypoint`` does, drops the image's cmd: a
    string is one program, a list an argv, ``""`` or ``[]`` none at all.
    Raises SpecError (keys "command", "entrypoint") for a bad value, or when
    nothing is left to run.
    """
    args = validate.command(command, "command")
    config = config or {}
    if entrypoint is None:
        entry = list(config.get("entrypoint") or ())
        if args is None:
            args = tuple(config.get("cmd") or ())
    elif entrypoint in ("", [], ()):
        entry = []
    else:
        given = [entrypoint] if isinstance(entrypoint, str) else entrypoint
        entry = list(validate.command(given, "entrypoint") or ())
    argv = [*entry, *(args or ())]
    if not argv:
        if entrypoint is None:
            raise SpecError("no command given and the image has no cmd", key="command")
        raise SpecError(
            "no command given, and entrypoint= replaced the image's entrypoint and cmd with none",
            key="command",
        )
    return argv


def executable_found(meta: ContainerRecord, upper: Path, store: Store) -> bool:
    """Whether the command's program exists in the container's tree (its
    writable layer over the image's), looked up the way execvp would: a name
    with a slash as a path (from the workdir), else along $PATH. A program
    under a bind mount is taken on trust: the mount is not there yet."""
    program = meta.command[0]
    if "/" in program:
        candidates = [posixpath.join(meta.workdir, program)]
    else:
        path = meta.env.get("PATH", DEFAULT_PATH)
        candidates = [posixpath.join(d or meta.workdir, program) for d in path.split(":")]
    targets = [posixpath.normpath(m.target) for m in meta.mounts]
    for candidate in candidates:
        normal = posixpath.normpath(candidate)
        if any(normal == t or normal.startswith(t.rstrip("/") + "/") for t in targets):
            return True
    # The common case first, with plain strings (this runs at every start):
    # the program as a file or link in the topmost layer that has the path.
    dirs = [str(upper), *(str(store.layer_dir(k) / "fs") for k in reversed(meta.layers))]
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


def cannot_execute(meta: ContainerRecord, upper: Path, store: Store) -> str | None:
    """Why the command's program, a path (a name with a slash), is there but
    cannot be executed: "is a directory" or "permission denied" (no execute
    bit), as Docker reports it (exit code 126); None when it can, or is not
    there at all (see executable_found). A name looked up along $PATH skips
    what cannot be executed, as execvp does: this says nothing of it."""
    program = meta.command[0]
    if "/" not in program:
        return None
    candidate = posixpath.normpath(posixpath.join(meta.workdir, program))
    if any(candidate == t or candidate.startswith(t.rstrip("/") + "/")
           for t in (posixpath.normpath(m.target) for m in meta.mounts)):
        return None  # under a bind mount: not there yet
    dirs = [upper, *(store.layer_dir(k) / "fs" for k in reversed(meta.layers))]
    stack = LayerStack(dirs)
    try:
        real = stack.lookup(stack.resolve(candidate))
    except StorageError:
        return None
    if real is None:
        return None
    st = os.stat(real) if not real.is_symlink() else None
    if st is None:
        return None  # a link leading nowhere: not found
    if stat.S_ISDIR(st.st_mode):
        return "is a directory: permission denied"
    if not st.st_mode & 0o111:
        return "permission denied"
    return None


def check_exec(
    container: Container, cmd: Sequence[str], env: Mapping[str, str] | None, workdir: str | None
) -> None:
    """Raise LXCError (detail EXEC_FAILED, the program named) when the
    program of an exec of ``cmd`` in ``container`` is not there or cannot be
    executed: what ``docker exec`` says before anything runs (exit code
    126). The library's ``exec`` runs it all the same (exit code 127 or 126,
    as a shell's); the command line asks first. Raises ContainerNotFound."""
    import attrs  # (records are attrs classes)

    from pylxcore.errors import LXCError

    meta = container._meta()
    argv = command_argv(list(cmd), None)
    path_env = {"PATH": DEFAULT_PATH, **meta.env, **(env or {})}
    as_run = attrs.evolve(meta, command=tuple(argv), env=path_env, workdir=workdir or meta.workdir)
    store = container._collection._store
    upper = container.dir / "upper"
    why = cannot_execute(as_run, upper, store)
    if why is None and not executable_found(as_run, upper, store):
        why = "no such file in the container" if "/" in argv[0] else "not found in $PATH"
    if why is not None:
        raise LXCError(
            f"cannot exec in container {meta.name!r}: exec: {argv[0]!r}: {why}",
            operation="exec",
            container=meta.name,
            detail=EXEC_FAILED,
        )
