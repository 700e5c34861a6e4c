"""Unpacking one layer tar into overlayfs upper format: safe paths, whiteouts, xattrs, digests.

A layer tar is foreign input. No member may land outside the layer (absolute
paths, ``..``, writing through a symlink an earlier member made), a hard
link must point at a file of the same layer, and the blob must hash to the
digests its manifest and config promise, checked while it streams.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any

import attrs

from pylxcore.errors import StorageError
from pylxcore.store import rmtree
from pylxcore.transfer.digest import CHUNK, HashingReader, verify
from pylxcore.transfer.layertar import WHITEOUT_OPAQUE, WHITEOUT_PREFIX, XATTR_HEADER, carries_xattr

log = logging.getLogger("pylxcore")

# The xattr that makes a directory opaque in overlayfs upper format (see runtime.rootfs.is_opaque).
OPAQUE_XATTR = "trusted.overlay.opaque"


@attrs.frozen
class LayerBlob:
    """Where one layer is inside its archive and what it must hash to."""

    name: str  # path inside the archive
    diff_id: str  # sha256 of the uncompressed tar
    digest: str | None  # sha256 of the blob as stored, when known
    size: int | None  # the blob's size, when known
    media_type: str | None = None  # the descriptor's, when the format gives one


@attrs.frozen
class Unpacked:
    """What unpacking a layer blob learned about it: the blob's digest, size and compression."""

    digest: str
    size: int
    compressed: bool  # gzip, else a plain tar


def clean_relpath(name: str, what: str) -> str:
    """``name`` as a relative path without ``.`` parts ("" for the root).

    Raises StorageError for an absolute path or one with ``..``.
    """
    if name.startswith("/"):
        raise StorageError(f"{what} {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"{what} {name!r} points outside (has '..')")
    return "/".join(parts)


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: HashingReader) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer)) or b""
        buffer[: len(data)] = data
        return len(data)


class _Gunzip(io.RawIOBase):
    """The uncompressed bytes of a gzip stream (one member or several; NUL padding
    between them is skipped), read from ``source`` in big blocks.

    gzip.GzipFile reads its input 8 KiB at a time: on a pull, the Python calls
    around those reads cost more than the inflating. zlib checks each member's
    CRC-32 and length; a stream that ends inside a member raises EOFError,
    corrupt data zlib.error.
    """

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self._source = source
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._input = b""
        self._fresh = True  # no byte of the current member seen yet

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if not self._input:
                self._input = self._source.read(CHUNK) or b""
                if not self._input:
                    if not self._fresh:
                        raise EOFError("the gzip stream ends inside a member")
                    return 0
            if self._fresh:
                self._input = self._input.lstrip(b"\0")
                if not self._input:
                    continue
                self._fresh = False
            out = self._inflate.decompress(self._input, len(buffer))
            if self._inflate.eof:  # a member ends; another may follow
                self._input = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                self._fresh = True
            else:
                self._input = self._inflate.unconsumed_tail
            if out:
                buffer[: len(out)] = out
                return len(out)


def _decompressed(raw: HashingReader, name: str) -> IO[bytes]:
    """The uncompressed bytes of a layer blob: gzip or a plain tar, told by its first bytes.

    Raises StorageError for compressions this import does not read (zstd, xz, bzip2).
    """
    head = raw.read(4) or b""
    stream = _Prefixed(head, raw)
    if head[:2] == b"\x1f\x8b":
        return _Gunzip(stream)  # type: ignore[arg-type,return-value]
    if head == b"\x28\xb5\x2f\xfd":
        raise StorageError(f"layer {name} is zstd-compressed, which this import does not read", path=name)
    if head[:3] == b"BZh" or head == b"\xfd7zX":
        raise StorageError(
            f"layer {name} is compressed with bzip2 or xz, which OCI layers do not use", path=name
        )
    return stream  # type: ignore[return-value]


def _real_dir(fs: Path, rel: str, member: str) -> Path:
    """``fs/rel`` as a real directory (created 0755 where missing), never through a link.

    Raises StorageError when a component is a symlink or not a directory.
    """
    current = fs
    for comp in [p for p in rel.split("/") if p]:
        current = current / comp
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            os.chmod(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise StorageError(
                f"tar member {member!r} would be written through {current.name!r}, which is {kind}"
            )
    return current


def _remove_existing(target: Path, keep_dir: bool) -> bool:
    """Clear ``target`` for a new member; True if it is a directory that stays."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        rmtree(target)
    else:
        target.unlink()
    return False


def _apply_xattrs(target: Path, member: tarfile.TarInfo) -> None:
    for key, value in sorted(member.pax_headers.items()):
        if not key.startswith(XATTR_HEADER):
            continue
        name = key[len(XATTR_HEADER) :]
        if not carries_xattr(name):
            continue
        try:
            os.setxattr(target, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as err:
            log.warning("cannot set xattr %s on %s: %s", name, target, err)


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, fs: Path, dirs: list[tuple[Path, int]]
) -> None:
    """Create one tar member under ``fs`` in overlayfs upper format. Raises StorageError, OSError."""
    rel = clean_relpath(member.name, "tar member")
    parent_rel, _, base = rel.rpartition("/")
    if not rel:
        if member.isdir():  # the layer's root directory itself
            os.chown(fs, member.uid, member.gid)
            os.chmod(fs, member.mode & 0o7777)
        return
    parent = _real_dir(fs, parent_rel, member.name)
    if base == WHITEOUT_OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return  # other aufs metadata (.wh..wh.plnk, ...): nothing overlayfs needs
    if base.startswith(WHITEOUT_PREFIX):
        hidden = base[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise StorageError(f"tar member {member.name!r} is not a valid whiteout")
        target = parent / hidden
        _remove_existing(target, keep_dir=False)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        return
    target = parent / base
    if member.isdir():
        if not _remove_existing(target, keep_dir=True):
            target.mkdir(mode=0o700)
        os.lchown(target, member.uid, member.gid)
        os.chmod(target, member.mode & 0o7777)
        _apply_xattrs(target, member)
        dirs.append((target, int(member.mtime)))
        return
    _remove_existing(target, keep_dir=False)
    if member.isreg():
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            src = tar.extractfile(member)
            if src is not None:
                shutil.copyfileobj(src, out, CHUNK)
            os.fchown(out.fileno(), member.uid, member.gid)
            os.fchmod(out.fileno(), member.mode & 0o7777)
    elif member.issym():
        link = member.linkname
        if not link.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(parent_rel or ".", link))
            if resolved == ".." or resolved.startswith("../"):
                raise StorageError(f"symlink {member.name!r} -> {link!r} points outside the image root")
        os.symlink(link, target)
        os.lchown(target, member.uid, member.gid)
    elif member.islnk():
        src_rel = clean_relpath(member.linkname, "hard link target")
        src_parent_rel, _, src_base = src_rel.rpartition("/")
        if not src_base:
            raise StorageError(f"hard link {member.name!r} points at the image root")
        source = _real_dir(fs, src_parent_rel, member.name) / src_base
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise StorageError(
                f"hard link {member.name!r} -> {member.linkname!r}: no such file in the layer"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"hard link {member.name!r} points at a directory")
        os.link(source, target, follow_symlinks=False)
        return  # the link shares the inode: owner, mode and times are the source's
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(target, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
        os.lchown(target, member.uid, member.gid)
    elif member.isfifo():
        os.mkfifo(target, member.mode & 0o7777)
        os.lchown(target, member.uid, member.gid)
    else:
        log.debug("skipping tar member %s of type %r", member.name, member.type)
        return
    if not member.issym():
        os.chmod(target, member.mode & 0o7777)  # chown cleared set-id bits
    _apply_xattrs(target, member)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _blame_digest(raw: HashingReader, blob: LayerBlob) -> None:
    """Raise for a blob that does not match its digest, if it does not: of a
    corrupt blob, that is what to report, not what the unpacker tripped on."""
    if blob.digest is None:
        return
    try:
        raw.drain()  # (a registry's stream raises its own RegistryError here)
    except OSError:
        return
    verify(
        f"layer blob {blob.digest}",
        blob.name,
        digest=raw.digest,
        size=raw.size,
        want_digest=blob.digest,
        want_size=None,
        size_from="manifest",
    )


def unpack_layer(fh: IO[bytes], blob: LayerBlob, fs: Path, *, keep: IO[bytes] | None = None) -> Unpacked:
    """Unpack the layer blob read from ``fh`` into the empty directory ``fs``; verify its digests.

    ``keep``, a file open for writing, gets a copy of the blob's bytes as
    they are read (an import keeps the blob, to give the same one back).
    ``fh`` may be a HashingReader nothing was read from yet: its hash is used.
    Raises StorageError (corrupt blob, digest mismatch, path tricks, or an
    OSError while writing).
    """
    dirs: list[tuple[Path, int]] = []
    try:
        raw: HashingReader
        if isinstance(fh, HashingReader) and fh.size == 0 and fh.copy_to is None:
            raw = fh  # it hashes already (a registry's blob stream): once is enough
            raw.copy_to = keep
        else:
            raw = HashingReader(fh, copy_to=keep)
        stream = _decompressed(raw, blob.name)
        compressed = isinstance(stream, _Gunzip)
        plain = HashingReader(stream)
        # Big reads: tarfile's default (10 KiB) makes the Python layers between
        # the socket and the files cost more than the gunzip itself.
        with tarfile.open(fileobj=plain, mode="r|", bufsize=CHUNK) as tar:
            for member in tar:
                _extract_member(tar, member, fs, dirs)
        plain.drain()
        raw.drain()
    except (tarfile.TarError, EOFError, zlib.error) as err:
        _blame_digest(raw, blob)
        raise StorageError(f"layer {blob.name} is not a valid layer tar: {err}", path=blob.name) from err
    except OSError as err:
        raise StorageError(f"cannot unpack layer {blob.name}: {err}", path=blob.name) from err
    verify(
        f"layer blob {blob.digest or blob.name}",
        blob.name,
        digest=raw.digest,
        size=raw.size,
        want_digest=blob.digest,
        want_size=blob.size,
        size_from="manifest",
    )
    if plain.digest != blob.diff_id:
        raise StorageError(
            f"layer {blob.name} is corrupt: its tar hashes to {plain.digest}, the config says {blob.diff_id}",
            path=blob.name,
        )
    # Last, deepest first: creating the entries inside a directory changed its mtime.
    for directory, mtime in reversed(dirs):
        os.utime(directory, (mtime, mtime), follow_symlinks=False)
    return Unpacked(raw.digest, raw.size, compressed)


__all__ = ["LayerBlob", "OPAQUE_XATTR", "Unpacked", "clean_relpath", "unpack_layer"]
