"""The build context: reading copy sources race-free, their cache digest, and copying them into a layer.

Whoever owns the build context can change it while a build reads it, for
instance swap a file for a symlink to /etc/shadow between a check and an
open. So nothing is checked and then opened by path: every component is
opened relative to its parent directory's fd with O_NOFOLLOW, and the type,
mode and bytes used are those of the opened fd. Symlinks are read as links,
never followed. The cache digest and the copy walk the source with the same
walker, and the copy hashes what it actually wrote: if that is not what the
cache key was made from, the layer is not committed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generator, Iterator

import attrs

from pylxcore.build.record import settled
from pylxcore.errors import SpecError
from pylxcore.runtime.rootfs import DIR_FLAGS, LayerStack, make_dir, open_dirs
from pylxcore.spec import resolve_copy_source
from pylxcore.store import sha256_hex

if TYPE_CHECKING:
    from pylxcore.build.recorder import Reads

# Whether the walk leaves out the entry at this path under the copy source
# (a directory's subtree with it): (path, is a directory) -> bool.
Skip = Callable[[str, bool], bool]

# O_NONBLOCK and O_NOCTTY: the fd must be the inode an lstat just saw as a
# regular file; should it be swapped for a fifo or a tty meanwhile, the open
# must neither block nor take a terminal (the inode check then refuses it).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@attrs.frozen
class _Entry:
    """One thing in a copy source, opened (a symlink is only read)."""

    rel: str  # the path under the copy source, "" for the source itself
    depth: int  # 0 for the source itself
    st: os.stat_result  # of ``fd``; of the link itself for a symlink
    fd: int  # -1 for a symlink
    target: str | None  # a symlink's target
    names: tuple[str, ...] | None = None  # a directory's entries, sorted, as the walk listed them


def _changed(path: str, key: str) -> SpecError:
    return SpecError(
        f"{path} changed while the build was reading it; build again once the context stays put", key=key
    )


def _open_at(dir_fd: int, name: str, shown: str, key: str) -> tuple[int, os.stat_result, str | None]:
    """Open ``name`` in the directory ``dir_fd`` without following a symlink.

    Returns (fd, fstat of fd, None) for a directory or regular file, and
    (-1, lstat, target) for a symlink. The lstat only decides how to open (so
    a fifo or device is refused without being opened); what is used is the
    fstat of the opened fd, which must be the inode the lstat saw. ``shown``
    is the path errors name.
    """
    try:
        lst = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(lst.st_mode):
            return -1, lst, os.readlink(name, dir_fd=dir_fd)
        if not (stat.S_ISDIR(lst.st_mode) or stat.S_ISREG(lst.st_mode)):
            raise SpecError(f"{shown} is not a regular file, directory or symlink", key=key)
        fd = os.open(name, DIR_FLAGS if stat.S_ISDIR(lst.st_mode) else _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        # Gone (ENOENT), now a symlink (ELOOP, from O_NOFOLLOW), no longer a
        # directory (ENOTDIR) or no longer a symlink (EINVAL, from readlink).
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
            raise _changed(shown, key) from err
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (lst.st_dev, lst.st_ino):
        os.close(fd)
        raise _changed(shown, key)
    return fd, st, None


@contextlib.contextmanager
def _opened_source(
    context: Path, src: str, key: str, reads: Reads | None = None
) -> Iterator[tuple[_Entry, str]]:
    """The copy source ``src`` of ``context``, opened: (its entry, its real path).

    resolve_copy_source applies the rules for ``src`` (relative, no ``..``,
    inside the context after symlinks, existing) and gives its real path,
    which has no symlink in it; that path is then opened component by
    component with O_NOFOLLOW, so a component swapped for a symlink since is
    refused, not followed. ``reads`` learns both resolutions.
    """
    real = str(resolve_copy_source(context, src, key=key))
    root = os.path.realpath(context)
    if reads is not None:
        reads.resolved(str(context), root)
        reads.resolved(os.path.join(root, src), real)
    rel = os.path.relpath(real, root)
    parts = [] if rel == "." else rel.split("/")
    if ".." in parts:  # the context itself moved since resolve_copy_source
        raise _changed(real, key)
    fd = os.open(root, DIR_FLAGS)  # the context folder itself is the caller's choice
    try:
        for part in parts:
            child, _, target = _open_at(fd, part, real, key)
            os.close(fd)
            fd = child
            if target is not None:
                raise _changed(real, key)
        yield _Entry("", 0, os.fstat(fd), fd, None), real
    finally:
        if fd >= 0:
            os.close(fd)


def _walk(top: _Entry, base: str, key: str, skip: Skip | None = None) -> Generator[_Entry, None, None]:
    """``top``, then for a directory everything under it: depth first, names
    sorted, each entry opened relative to its parent's fd by ``_open_at``.

    An entry's fd is open until the next entry is asked for, a directory's
    until its subtree is done; the caller owns ``top.fd``. ``base`` is the
    real path of ``top``, for error messages. Use it under contextlib.closing
    so that a consumer's error closes the fds at once. A directory's entry
    carries the names it was listed with. ``skip`` leaves entries out (.dockerignore).
    """
    if not stat.S_ISDIR(top.st.st_mode):
        yield top
        return
    names = sorted(os.listdir(top.fd))
    top = attrs.evolve(top, names=tuple(names))
    yield top
    # The open directories, each with the names it has left (reversed: pop() is the next).
    stack: list[tuple[_Entry, list[str]]] = [(top, names[::-1])]
    try:
        while stack:
            parent, names = stack[-1]
            if not names:
                stack.pop()
                if parent is not top:
                    os.close(parent.fd)
                continue
            name = names.pop()
            rel = f"{parent.rel}/{name}" if parent.rel else name
            fd, st, target = _open_at(parent.fd, name, os.path.join(base, rel), key)
            if skip is not None and skip(rel, target is None and stat.S_ISDIR(st.st_mode)):
                if fd >= 0:
                    os.close(fd)
                continue
            if target is None and stat.S_ISDIR(st.st_mode):
                try:
                    children = sorted(os.listdir(fd))
                except BaseException:
                    os.close(fd)
                    raise
                entry = _Entry(rel, len(stack), st, fd, None, tuple(children))
                stack.append((entry, children[::-1]))  # closed by the loop from here on
                yield entry
            else:
                entry = _Entry(rel, len(stack), st, fd, target)
                try:
                    yield entry
                finally:
                    if fd >= 0:
                        os.close(fd)
    finally:
        for parent, _ in stack:
            if parent is not top:
                os.close(parent.fd)


class _Digest:
    """What a copy depends on: per entry its path, type, permission bits, and
    the sha256 of its bytes (a file) or of its target (a symlink). Not owners
    or times: the copy makes everything root's."""

    def __init__(self) -> None:
        import hashlib  # (deferred: 4 ms of every import pylxcore)

        self._h = hashlib.sha256()

    def add(self, entry: _Entry, content: str) -> None:
        """``content``: as _content_sha256 gives it, or _copy_entry returns it."""
        if entry.depth == 0 and stat.S_ISDIR(entry.st.st_mode):
            return  # a directory source's own mode is not copied, only what it holds
        mode = entry.st.st_mode
        # content has a fixed length for the type, so names holding "\n" stay unambiguous
        self._h.update(
            os.fsencode(f"{entry.rel}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0{content}\n")
        )

    def hexdigest(self) -> str:
        return self._h.hexdigest()


# (dev, inode, size, mtime, ctime) -> sha256 of a context file: a cached
# rebuild need not re-read every byte of a large context. Only settled files
# are kept: one changed within the timestamp tick of its stat may change again
# unseen by its fingerprint, and is hashed afresh each time (as git does).
_CONTENT: dict[tuple[int, int, int, int, int], str] = {}


def _content_sha256(entry: _Entry) -> str:
    """What the digest records for ``entry``'s content, read from its fd."""
    if entry.target is not None:
        return sha256_hex(os.fsencode(entry.target))
    if stat.S_ISDIR(entry.st.st_mode):
        return ""
    import hashlib  # (deferred: 4 ms of every import pylxcore)

    st = entry.st
    fingerprint = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _CONTENT.get(fingerprint)
    if digest is None:
        h = hashlib.sha256()
        while chunk := os.read(entry.fd, 1 << 20):
            h.update(chunk)
        digest = h.hexdigest()
        if settled(st, time.time_ns()):
            if len(_CONTENT) > 100_000:
                _CONTENT.clear()
            _CONTENT[fingerprint] = digest
    return digest


def copy_digest(
    context: Path, src: str, *, key: str = "copy.src", reads: Reads | None = None, skip: Skip | None = None
) -> str:
    """The digest of what a copy of ``src`` from ``context`` copies; the same
    as the copy returns when the source did not change meanwhile. ``reads``
    learns every path resolved and every entry read, as it was read; what
    ``skip`` leaves out is neither read nor copied.

    Raises SpecError (with ``key``) for a source resolve_copy_source refuses,
    a special file (fifo, socket, device), or a source that changes while read.
    """
    digest = _Digest()
    with (
        _opened_source(context, src, key, reads) as (top, base),
        contextlib.closing(_walk(top, base, key, skip)) as entries,
    ):
        for entry in entries:
            content = _content_sha256(entry)
            digest.add(entry, content)
            if reads is not None:
                reads.saw(
                    os.path.join(base, entry.rel) if entry.rel else base,
                    entry.st,
                    follow=False,
                    sha256=content if stat.S_ISREG(entry.st.st_mode) else None,
                    names=entry.names,
                    target=entry.target,
                )
    return digest.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_entry(
    entry: _Entry, dir_fd: int, name: str, mode: int | None, owner: tuple[int, int] | None = (0, 0)
) -> tuple[str, int | None]:
    """Create ``name`` in the layer directory ``dir_fd`` as a copy of ``entry``,
    owned by ``owner`` (uid, gid; None: the source's own). Returns what the
    digest records for it (the sha256 of the bytes actually written) and, for
    a directory, the fd of the new one."""
    if owner is None:
        owner = (entry.st.st_uid, entry.st.st_gid)
    if entry.target is not None:
        os.symlink(entry.target, name, dir_fd=dir_fd)
        os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
        return _content_sha256(entry), None
    perms = mode if mode is not None else stat.S_IMODE(entry.st.st_mode)
    if stat.S_ISDIR(entry.st.st_mode):
        return _content_sha256(entry), make_dir(dir_fd, name, *owner, perms)
    import hashlib  # (deferred: 4 ms of every import pylxcore)

    h = hashlib.sha256()
    # O_NOFOLLOW|O_EXCL: the target is new in a fresh layer; never write through a link.
    out = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
    )
    try:
        while chunk := os.read(entry.fd, 1 << 20):
            h.update(chunk)
            _write_all(out, chunk)
        os.fchown(out, *owner)
        os.fchmod(out, perms)
        os.utime(out, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns))
    finally:
        os.close(out)
    return h.hexdigest(), None


def copy_into(
    context: Path,
    src: str,
    key: str,
    dest: str,
    fs: Path,
    stack: LayerStack,
    mode: int | None,
    *,
    owner: tuple[int, int] | None = (0, 0),
    skip: Skip | None = None,
) -> str:
    """Docker COPY semantics of ``src`` (in ``context``) into the fresh layer
    ``fs`` over ``stack``; returns the digest of what was copied.

    A directory source copies its contents into ``dest``; a file source lands
    at ``dest``, or inside it when ``dest`` ends with "/" or is a directory in
    the image. Symlinks in ``dest`` resolve inside the image, never the host;
    symlinks in the source are copied as symlinks. What is copied is owned
    by ``owner`` (uid, gid; None keeps the source's); what ``skip`` says is left out.
    """
    digest = _Digest()
    with (
        _opened_source(context, src, key) as (top, base),
        contextlib.closing(_walk(top, base, key, skip)) as entries,
    ):
        next(entries)  # top itself
        if stat.S_ISDIR(top.st.st_mode):
            # dirs[d - 1] is the layer directory the source's entries at depth d go into.
            dirs = [open_dirs(fs, stack, stack.resolve(dest, follow_last=True), owner=owner or (0, 0))]
            try:
                if mode is not None:
                    os.fchmod(dirs[0], mode)
                for entry in entries:
                    while len(dirs) > entry.depth:
                        os.close(dirs.pop())
                    content, made = _copy_entry(entry, dirs[-1], os.path.basename(entry.rel), mode, owner)
                    digest.add(entry, content)
                    if made is not None:
                        dirs.append(made)
            finally:
                for fd in dirs:
                    os.close(fd)
            return digest.hexdigest()
        resolved = stack.resolve(dest, follow_last=True)
        existing = stack.lookup(resolved)
        if dest.endswith("/") or (existing is not None and existing.is_dir() and not existing.is_symlink()):
            parent, name = resolved, os.path.basename(base)
        else:
            resolved = stack.resolve(dest, follow_last=False)
            parent, name = os.path.dirname(resolved), os.path.basename(resolved)
        if not name:
            raise SpecError(f"copy destination {dest!r} names no file", key="copy.dest")
        parent_fd = open_dirs(fs, stack, parent, owner=owner or (0, 0))
        try:
            content, _ = _copy_entry(top, parent_fd, name, mode, owner)
        finally:
            os.close(parent_fd)
        digest.add(top, content)
        return digest.hexdigest()


def ignore_skip(src: str, patterns: tuple[str, ...]) -> Skip | None:
    """What ``.dockerignore`` ``patterns`` (relative to the context) leave out of the copy source ``src``."""
    if not patterns:
        return None
    import posixpath

    from pylxcore.spec.dockerignore import IgnoreRules

    rules = IgnoreRules(patterns)

    def skip(rel: str, is_dir: bool) -> bool:
        path = posixpath.join(src, rel)
        # An ignored folder is still walked when a "!" pattern may bring back something in it.
        return rules.ignored(path) and not (is_dir and rules.may_keep_under(path))

    return skip


__all__ = ["copy_digest", "copy_into", "ignore_skip"]
