"""The layer tar format: writing file trees as reproducible tar members, whiteouts, xattr headers.

A pylxcore layer is stored in overlayfs *upper* format, so the conversion to
an OCI layer tar is direct: a whiteout (a 0/0 character device) becomes an
empty ``.wh.NAME`` file, an opaque directory (xattr ``trusted.overlay.opaque=y``)
gets a ``.wh..wh..opq`` entry. Xattrs travel as PAX ``SCHILY.xattr.*``
headers, as GNU tar, podman and Docker write them. ``unpack`` reads the same
format back.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import IO

from pylxcore.build.bases import LOCAL_XATTRS, OVERLAY_XATTR_PREFIXES
from pylxcore.errors import StorageError
from pylxcore.runtime.rootfs import is_opaque, is_whiteout
from pylxcore.store import Store
from pylxcore.store.records import ImageRecord

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
XATTR_HEADER = "SCHILY.xattr."


def carries_xattr(name: str) -> bool:
    """Whether a layer tar carries the xattr ``name``, in either direction.

    Not overlayfs's own (they would forge opaque dirs, redirects and whiteouts
    in the store's layers) nor those whose meaning is local to one host's
    security policy: the same rule as for a ``tar:`` base (build.bases).
    """
    return not name.startswith(OVERLAY_XATTR_PREFIXES) and name not in LOCAL_XATTRS


def xattr_headers(path: Path) -> dict[str, str]:
    """PAX ``SCHILY.xattr.*`` headers for the xattrs of ``path`` a layer tar carries.

    Raises StorageError for overlayfs redirect/metacopy xattrs: such a layer
    depends on its lower layers in a way a tar cannot express.
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    headers: dict[str, str] = {}
    for name in sorted(names):
        if name.endswith(("overlay.redirect", "overlay.metacopy")):
            raise StorageError(
                f"{path} uses overlayfs {name.rsplit('.', 1)[-1]}, which a layer tar cannot carry",
                path=str(path),
            )
        if not carries_xattr(name):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        headers[XATTR_HEADER + name] = value.decode("utf-8", "surrogateescape")
    return headers


class TreeTarWriter:
    """Adds files from disk to a tar as reproducible members.

    Owners stay numeric (no user or group names); ``mtime`` (when not None)
    replaces every member's time; regular files with several names in one
    tree become one file plus hard links to it, in the order they are added.
    """

    def __init__(self, tar: tarfile.TarFile, *, mtime: int | None) -> None:
        self.tar = tar
        self.mtime = mtime
        self._links: dict[tuple[int, int], str] = {}

    def _info(self, arcname: str, st: os.stat_result | None, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode = mode
        info.uid = st.st_uid if st else 0
        info.gid = st.st_gid if st else 0
        info.uname = info.gname = ""
        if self.mtime is not None or st is None:
            info.mtime = self.mtime or 0
        else:
            info.mtime = int(st.st_mtime)
        return info

    def add_path(self, path: Path, arcname: str, st: os.stat_result | None = None) -> None:
        """Add ``path`` (not followed if a link) as ``arcname``; sockets are skipped.

        Raises OSError from reading the file, StorageError (see xattr_headers).
        """
        st = st or os.lstat(path)
        info = self._info(arcname, st, stat.S_IMODE(st.st_mode))
        mode = st.st_mode
        if stat.S_ISREG(mode):
            ident = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and ident in self._links:
                info.type = tarfile.LNKTYPE
                info.linkname = self._links[ident]
                self.tar.addfile(info)
                return
            if st.st_nlink > 1:
                self._links[ident] = arcname
            info.type = tarfile.REGTYPE
            info.size = st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # a socket: meaningless in an image
        if not stat.S_ISLNK(mode):
            info.pax_headers = xattr_headers(path)
        if info.type == tarfile.REGTYPE:
            with open(path, "rb") as fh:
                self.tar.addfile(info, fh)
        else:
            self.tar.addfile(info)

    def add_bytes(self, arcname: str, data: bytes, *, mode: int = 0o644) -> None:
        """A regular file holding ``data``, owned by root."""
        info = self._info(arcname, None, mode)
        info.type = tarfile.REGTYPE
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def add_stream(self, arcname: str, fh: IO[bytes], size: int, *, mode: int = 0o644) -> None:
        """A regular file of ``size`` bytes read from ``fh`` as it is written, owned by root.
        Raises OSError (tarfile's, when ``fh`` ends early)."""
        info = self._info(arcname, None, mode)
        info.type = tarfile.REGTYPE
        info.size = size
        self.tar.addfile(info, fh)

    def add_dir(self, arcname: str, *, mode: int = 0o755) -> None:
        """A directory owned by root."""
        info = self._info(arcname, None, mode)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)

    def add_empty(self, arcname: str, *, mode: int = 0) -> None:
        """An empty regular file owned by root (whiteout markers)."""
        self.add_bytes(arcname, b"", mode=mode)


def write_layer_tar(fs: Path, tar: tarfile.TarFile, *, mtime: int) -> None:
    """Write the layer tree ``fs`` (overlayfs upper format) as an OCI layer.

    Raises StorageError (a file named ``.wh.*``, overlayfs redirects) and OSError.
    """
    writer = TreeTarWriter(tar, mtime=mtime)

    def walk(directory: Path, prefix: str) -> None:
        entries: list[tuple[str, Path | None, os.stat_result | None]] = []
        if is_opaque(directory) and prefix:
            entries.append((prefix + WHITEOUT_OPAQUE, None, None))
        for name in sorted(os.listdir(directory), key=os.fsencode):
            full = directory / name
            st = os.lstat(full)
            if name.startswith(WHITEOUT_PREFIX):
                raise StorageError(
                    f"{full}: a file named {WHITEOUT_PREFIX}* cannot be carried in an OCI layer",
                    path=str(full),
                )
            if is_whiteout(st):
                entries.append((prefix + WHITEOUT_PREFIX + name, None, None))
            else:
                entries.append((prefix + name, full, st))
        entries.sort(key=lambda e: os.fsencode(e[0]))
        for arcname, entry_path, entry_st in entries:
            if entry_path is None or entry_st is None:
                writer.add_empty(arcname)
                continue
            writer.add_path(entry_path, arcname, entry_st)
            if stat.S_ISDIR(entry_st.st_mode):
                walk(entry_path, arcname + "/")

    walk(fs, "")


def layer_trees(store: Store, record: ImageRecord, ref: str) -> list[Path]:
    """The trees of the image ``record``'s layers, bottom first (``ref`` names it in errors).

    The caller holds ``lock("gc", shared=True)`` while it reads them. Raises
    StorageError when a layer is missing from the store.
    """
    trees = []
    for key in record.layers:
        fs = store.layer_dir(key) / "fs"
        if not fs.is_dir():
            raise StorageError(f"layer {key} of image {ref!r} is missing from the store", path=str(fs))
        trees.append(fs)
    return trees


__all__ = [
    "WHITEOUT_PREFIX",
    "WHITEOUT_OPAQUE",
    "XATTR_HEADER",
    "carries_xattr",
    "xattr_headers",
    "TreeTarWriter",
    "write_layer_tar",
    "layer_trees",
]
