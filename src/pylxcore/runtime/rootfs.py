"""Assembling a root from a stack of layer dirs: the overlay spec liblxc mounts,
and reading paths through the stack without mounting anything.

Layers are listed top first, as overlayfs lists lowerdirs. liblxc mounts the
overlay inside the container's own mount namespace, so the mount goes away
with the container's last process: nothing can leak onto the host.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path
from typing import Collection, Iterator, Sequence

from pylxcore.errors import SpecError, StorageError

# One mount's options must fit one page; keep a margin for the rest of them.
_MOUNT_OPTIONS_MAX = 4096 - 64
MOUNT_OPTIONS_MAX = _MOUNT_OPTIONS_MAX  # (for the other mounts of layers: runtime.archive)
_FORBIDDEN_IN_PATHS = (":", ",", "\n", " ")
_MAX_SYMLINKS = 40


def overlay_spec(lowers: Sequence[str], upper: Path) -> str:
    """``lxc.rootfs.path`` for an overlay of ``lowers`` (top first) and a writable ``upper``.

    liblxc puts the overlay's workdir beside ``upper`` (``upper/../work``), so
    each upper must have a directory of its own. Raises StorageError when the
    stack is too deep for one mount (never overlay on overlay: the kernel
    allows a stacking depth of 2).
    """
    paths = [*lowers, str(upper)]
    for p in paths:
        if any(ch in p for ch in _FORBIDDEN_IN_PATHS):
            raise StorageError(f"layer path {p!r} holds a character overlayfs options cannot carry", path=p)
    work = os.path.join(os.path.dirname(str(upper)), "work")
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(options) > _MOUNT_OPTIONS_MAX:
        raise StorageError(
            f"{len(lowers)} layers are too many for one overlay mount here (options {len(options)} bytes,"
            f" the kernel takes {_MOUNT_OPTIONS_MAX}); squash some layers or use a shorter store root",
            path=str(upper),
        )
    return "overlay:" + ":".join(paths)


def is_whiteout(st: os.stat_result) -> bool:
    """Whether ``st`` is an overlayfs whiteout (a 0/0 character device)."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    """Whether the directory ``path`` is an overlayfs opaque directory."""
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


class LayerStack:
    """Read-only view of the merged tree of some layer dirs (top first)."""

    def __init__(self, layers: Sequence[Path]) -> None:
        self.layers = [Path(p) for p in layers]

    def lookup(self, path: str) -> Path | None:
        """The real path of ``path`` in the topmost layer that has it, or None.

        Honors whiteouts and opaque dirs like overlayfs does. Symlinks are not
        followed: ``path`` is looked up as it stands.
        """
        parts = [p for p in path.split("/") if p and p != "."]
        if not parts:
            return self.layers[0] if self.layers else None
        for layer in self.layers:
            current = layer
            hides_lower = False
            found = True
            for i, comp in enumerate(parts):
                current = current / comp
                try:
                    st = os.lstat(current)
                except (FileNotFoundError, NotADirectoryError):
                    found = False
                    break
                last = i == len(parts) - 1
                if is_whiteout(st):
                    return None
                if not last:
                    if not stat.S_ISDIR(st.st_mode):
                        return None  # a file above shadows the whole subtree below
                    if is_opaque(current):
                        hides_lower = True
            if found:
                return current
            if hides_lower:
                return None
        return None

    def read_bytes(self, path: str) -> bytes | None:
        real = self.lookup(path)
        if real is None or not real.is_file() or real.is_symlink():
            return None
        return real.read_bytes()

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """Resolve symlinks in ``path`` as if the stack were ``/`` (a chroot).

        ``..`` and absolute link targets never leave the image root: this is
        how a ``copy`` into ``/target/x`` stays inside the image when a lower
        layer made ``/target`` a link to ``/``. Missing components are kept as
        they are. Raises StorageError on a symlink loop.
        """
        pending = [p for p in path.split("/") if p and p != "."]
        resolved: list[str] = []
        hops = 0
        while pending:
            comp = pending.pop(0)
            if comp == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = "/" + "/".join([*resolved, comp])
            real = self.lookup(candidate)
            is_last = not pending
            if real is not None and real.is_symlink() and (follow_last or not is_last):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise StorageError(f"too many levels of symbolic links resolving {path!r}", path=path)
                target = os.readlink(real)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p and p != "."] + pending
                continue
            resolved.append(comp)
        return posixpath.join("/", *resolved)



DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make_dir(dir_fd: int, name: str, uid: int, gid: int, perms: int) -> int:
    """Create the directory ``name`` in ``dir_fd``; return its fd (O_NOFOLLOW: the one just made)."""
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, perms)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dirs(
    top: Path,
    stack: LayerStack,
    path: str,
    *,
    shift: tuple[int, int] = (0, 0),
    owner: tuple[int, int] = (0, 0),
) -> int:
    """Open ``path`` (resolved, absolute) as a directory in the layer ``top``
    above ``stack`` and return its fd. Missing directories are created with
    the owner and mode the lower layers already give them, so that the new
    layer does not change them (e.g. /tmp stays 1777); ``shift`` is added to
    owners (a ``userns`` container's writable layer holds host ids); ``owner``
    owns the directories the image does not have (a ``COPY --chown``'s). Each
    component is opened relative to its parent with O_NOFOLLOW: nothing is
    ever written outside ``top``. Raises OSError (e.g. NotADirectoryError)."""
    fd = os.open(top, DIR_FLAGS)
    parts = [p for p in path.split("/") if p]
    try:
        for i, comp in enumerate(parts):
            try:
                child = os.open(comp, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                uid, gid, perms = *owner, 0o755
                lower = stack.lookup("/" + "/".join(parts[: i + 1]))
                if lower is not None:
                    st = os.lstat(lower)
                    if not stat.S_ISDIR(st.st_mode):
                        # A dir here would hide the image's file (overlayfs: upper wins).
                        why = "not a directory in the image"
                        raise NotADirectoryError(errno.ENOTDIR, why, comp) from None
                    uid, gid, perms = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
                child = make_dir(fd, comp, uid + shift[0], gid + shift[1], perms)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_target(
    top: Path, stack: LayerStack, path: str, *, file: bool, key: str, shift: tuple[int, int] = (0, 0)
) -> str:
    """Make ``path`` exist in the merged tree of ``top`` over ``stack`` and
    return it with every symlink resolved inside that root: the target of a
    bind mount, or any directory the library creates inside a container.

    The image's symlinks lead only to places inside its root (``/etclink ->
    /etc`` makes ``/etclink/x`` the container's ``/etc/x``, never the host's).
    What is missing is made in ``top`` (the container's writable layer) by
    ``open_dirs``, and the last component as a file when ``file``.

    Raises SpecError (with ``key``) when a component is not a directory
    where one is needed, StorageError on a symlink loop.
    """
    merged = LayerStack([top, *stack.layers])
    resolved = merged.resolve(path)
    if merged.lookup(resolved) is not None:
        return resolved
    parent, name = posixpath.split(resolved)
    try:
        fd = open_dirs(top, stack, parent, shift=shift)
        try:
            if file:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(name, flags, 0o644, dir_fd=fd))
                os.chown(name, *shift, dir_fd=fd, follow_symlinks=False)
            else:
                os.close(make_dir(fd, name, *shift, 0o755))
        finally:
            os.close(fd)
    except (NotADirectoryError, FileExistsError) as err:
        raise SpecError(
            f"{path!r} leads through {parent!r}, which in the container is not a directory", key=key
        ) from err
    return resolved


def merged_entries(
    layers: Sequence[Path], *, skip: Collection[str] = ()
) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Walk the merged tree of ``layers`` (bottom first) as overlayfs shows it.

    Yields ``(relative path, the real path in the layer that provides it, its
    lstat)`` in sorted pre-order (a directory before its contents), without the
    root itself and without whiteouts. Paths in ``skip`` (relative, e.g.
    "etc/hostname") are left out, with what is below them.
    """
    top_first = [Path(p) for p in reversed(layers)]

    def walk(rel: str, candidates: list[Path]) -> Iterator[tuple[str, Path, os.stat_result]]:
        children: dict[str, tuple[int, Path, os.stat_result]] = {}
        hidden: set[str] = set()
        used: list[Path] = []  # the layers that contribute to this directory, top first
        for layer in candidates:
            here = layer / rel if rel else layer
            try:
                st = os.lstat(here)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a file or whiteout here hides this directory in every lower layer
            used.append(layer)
            for name in os.listdir(here):
                if name in children or name in hidden:
                    continue
                child_st = os.lstat(here / name)
                if is_whiteout(child_st):
                    hidden.add(name)
                    continue
                children[name] = (len(used) - 1, here / name, child_st)
            if rel and is_opaque(here):
                break
        for name in sorted(children, key=os.fsencode):
            index, real, st = children[name]
            child_rel = f"{rel}/{name}" if rel else name
            if child_rel in skip:
                continue
            yield child_rel, real, st
            if stat.S_ISDIR(st.st_mode):
                yield from walk(child_rel, used[index:])

    yield from walk("", top_first)
