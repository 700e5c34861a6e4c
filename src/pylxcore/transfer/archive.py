"""Reading files out of an image archive, a directory or a tar, by path and never outside it."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tarfile
from pathlib import Path
from typing import IO, Any

from pylxcore.errors import StorageError
from pylxcore.transfer.unpack import clean_relpath

MAX_JSON = 16 << 20  # index, manifests and configs are small; refuse absurd ones
_MAX_LINK_HOPS = 8


class Archive:
    """Files of an image archive, by their path inside it."""

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a regular file of the archive."""
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        """Raises StorageError when missing or not a regular file."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read_json(self, name: str) -> tuple[Any, bytes]:
        """(parsed, raw bytes) of a small JSON file (at most MAX_JSON bytes). Raises StorageError."""
        with self.open(name) as fh:
            data = fh.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise StorageError(f"{name} is larger than {MAX_JSON} bytes", path=name)
        try:
            return json.loads(data), data
        except ValueError as err:
            raise StorageError(f"{name} is not valid JSON: {err}", path=name) from err


class DirArchive(Archive):
    """An unpacked archive: symlinks are followed, but only within ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)

    def _path(self, name: str) -> str:
        rel = clean_relpath(name, "path")
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise StorageError(f"{name} leads outside {self.root}", path=name)
        return real

    def exists(self, name: str) -> bool:
        try:
            return os.path.isfile(self._path(name))
        except StorageError:
            return False

    def open(self, name: str) -> IO[bytes]:
        path = self._path(name)
        if not os.path.isfile(path):
            raise StorageError(f"the image has no file {name}", path=os.path.join(self.root, name))
        return open(path, "rb")


class TarArchive(Archive):
    """A tar file (any compression tarfile reads); links between members are followed."""

    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
            members = self.tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise StorageError(f"{path} is not a readable tar archive: {err}", path=str(path)) from err
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            with contextlib.suppress(StorageError):  # a member no lookup can name
                self.members[clean_relpath(m.name, "member")] = m

    def _member(self, name: str) -> tarfile.TarInfo:
        rel = clean_relpath(name, "path")
        for _ in range(_MAX_LINK_HOPS):
            m = self.members.get(rel)
            if m is None:
                raise StorageError(f"{self.path} has no member {name}", path=str(self.path))
            if m.issym():
                rel = clean_relpath(
                    posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname)), "link"
                )
            elif m.islnk():
                rel = clean_relpath(m.linkname, "link")
            elif m.isreg():
                return m
            else:
                raise StorageError(f"{name} in {self.path} is not a file", path=str(self.path))
        raise StorageError(f"too many links resolving {name} in {self.path}", path=str(self.path))

    def exists(self, name: str) -> bool:
        try:
            self._member(name)
        except StorageError:
            return False
        return True

    def open(self, name: str) -> IO[bytes]:
        fh = self.tar.extractfile(self._member(name))
        if fh is None:
            raise StorageError(f"{name} in {self.path} is not a file", path=str(self.path))
        return fh

    def close(self) -> None:
        self.tar.close()


def open_archive(path: Path) -> Archive:
    """The archive at ``path``: a directory or a tar file. Raises StorageError."""
    if path.is_dir():
        return DirArchive(path)
    if path.is_file():
        return TarArchive(path)
    raise StorageError(f"{path} does not exist", path=str(path))


__all__ = ["MAX_JSON", "Archive", "DirArchive", "TarArchive", "open_archive"]
