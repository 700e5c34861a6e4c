"""What a container changed (``docker diff``) and what runs in it (``docker top``).

The changes are read from the container's writable layer (overlayfs's
upper dir) against its image's layers, as Docker's overlay driver reads
them: a whiteout is a deletion, a path the image has is a change, any
other an addition; the directory holding an addition or a deletion is
changed too. Paths the library itself makes in the writable layer (the
targets of bind mounts, a network's /etc/hosts) are not the container's
changes and are left out, as Docker leaves out its init layer.
"""

from __future__ import annotations

import os
import posixpath
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pylxcore.errors import InvalidState
from pylxcore.runtime.rootfs import LayerStack, is_opaque, is_whiteout

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

ADDED, CHANGED, DELETED = "A", "C", "D"
# docker-py's Kind numbers for each letter.
KIND_NUMBER = {CHANGED: 0, ADDED: 1, DELETED: 2}
NETWORK_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


@attrs.frozen
class Change:
    """One path the container changed: ``kind`` is "A", "C" or "D"."""

    kind: str
    path: str

    def to_docker(self) -> dict[str, Any]:
        """As docker-py's ``Container.diff()`` gives it: ``{"Path": …, "Kind": 0|1|2}``."""
        return {"Path": self.path, "Kind": KIND_NUMBER[self.kind]}


def _same_dir(upper: os.stat_result, lower: os.stat_result) -> bool:
    return upper.st_mode == lower.st_mode and upper.st_mtime_ns == lower.st_mtime_ns and (
        upper.st_size == lower.st_size
    )


def layer_changes(upper: Path, lowers: LayerStack, hidden: frozenset[str] = frozenset()) -> list[Change]:
    """The changes the writable layer ``upper`` makes over ``lowers``, in a
    walk's order (each directory before its contents); ``hidden`` paths
    (and directories holding nothing else) are left out."""
    found: dict[str, str] = {}

    def note_parent(path: str) -> None:
        # As Docker's (naive) diff: a directory holding a change is changed,
        # up to the root, even when its own attributes are as they were.
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in found:
            found[parent] = CHANGED
            parent = posixpath.dirname(parent)

    def walk(real: Path, path: str) -> bool:
        """Record the changes under directory ``path``; whether it holds any not hidden."""
        any_shown = False
        names = sorted(os.listdir(real))
        if path != "/" and is_opaque(real):
            below = lowers.lookup(path)
            if below is not None and below.is_dir() and not below.is_symlink():
                for name in sorted(set(os.listdir(below)) - set(names)):
                    child = posixpath.join(path, name)
                    if lowers.lookup(child) is not None:
                        found[child] = DELETED
                        note_parent(child)
                        any_shown = True
        for name in names:
            child_real = real / name
            child = posixpath.join(path, name)
            st = os.lstat(child_real)
            if child in hidden:
                continue
            below = lowers.lookup(child)
            if is_whiteout(st):
                if below is not None:
                    found[child] = DELETED
                    note_parent(child)
                    any_shown = True
                continue
            if below is None:
                found[child] = ADDED
                note_parent(child)
                any_shown = True
            else:
                lst = os.lstat(below)
                if not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(lst.st_mode) and _same_dir(st, lst)):
                    found[child] = CHANGED
                    note_parent(child)
                    any_shown = True
            if stat.S_ISDIR(st.st_mode):
                inner = walk(child_real, child)
                any_shown = any_shown or inner
                if not inner and found.get(child) == CHANGED and below is not None:
                    # Changed only by what is hidden (a mount target made in it).
                    if any(h.startswith(child + "/") for h in hidden):
                        del found[child]
        return any_shown

    walk(upper, "/")
    # Docker's order: a tree's walk, each directory before what is in it.
    return [Change(found[path], path) for path in sorted(found, key=lambda p: p.split("/"))]


def diff(container: Container) -> list[Change]:
    """The container's changes to its image's files (``docker diff``),
    each directory before its contents. Raises ContainerNotFound."""
    meta = container._meta()
    store = container._collection._store
    lowers = LayerStack([store.layer_dir(k) / "fs" for k in reversed(meta.layers)])
    hidden = {posixpath.normpath(m.target) for m in meta.mounts}
    if meta.extra.get("networks"):
        hidden.update(NETWORK_FILES)
    return layer_changes(container.dir / "upper", lowers, frozenset(hidden))


def top(container: Container, ps_args: str = "-ef") -> dict[str, Any]:
    """The container's processes as ``docker top`` lists them: ``{"Titles":
    [...], "Processes": [[...], ...]}``, ``ps_args`` as ps(1) takes them
    (default ``-ef``). Host pids and ids, as docker shows them. Raises
    InvalidState (not running)."""
    from pylxcore.runtime.limits import host_layout

    container.reload()
    if container.state.value not in ("running", "paused"):
        raise InvalidState(
            f"cannot list the processes of container {container.name!r}: it is {container.state.value}",
            name=container.name,
            state=container.state.value,
            operation="top",
        )
    pids: set[int] = set()
    cgroup = container._collection._cgroup_dir(container.key)
    for _kind, mount in host_layout().controllers.values():
        try:
            with open(os.path.join(mount, cgroup, "cgroup.procs")) as fh:
                pids.update(int(line) for line in fh if line.strip())
        except OSError:
            continue
        if pids:
            break
    # liblxc's init (pid 1 inside) is the library's, not the container's program.
    init, _ = container._pids()
    pids.discard(init or -1)
    out = subprocess.run(["ps", *ps_args.split()], capture_output=True, text=True, check=False)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or not lines:
        raise InvalidState(f"ps {ps_args} failed: {out.stderr.strip()}", name=container.name, operation="top")
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidState(f"ps {ps_args} lists no PID column", name=container.name, operation="top")
    at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > at and fields[at].isdigit() and int(fields[at]) in pids:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}
