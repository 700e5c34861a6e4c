"""Content addressing of OCI blobs: sha256 digests of streams, digest syntax, verification."""

from __future__ import annotations

import hashlib
import io
import re
from typing import IO, Any

from pylxcore.errors import StorageError

CHUNK = 1 << 20  # bytes per read or write when streaming a blob
_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(text: str) -> bool:
    """Whether ``text`` is the hex part of a sha256 digest (64 lowercase hex digits)."""
    return _HEX64.fullmatch(text) is not None


def blob_name(digest: Any) -> str:
    """The path of the blob ``digest`` inside an image layout ("blobs/sha256/<hex>").

    Raises StorageError for anything but a well-formed sha256 digest: the
    result is used as a path, so it must not carry separators or ``..``.
    """
    if not isinstance(digest, str) or not digest.startswith("sha256:") or not is_sha256_hex(digest[7:]):
        raise StorageError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
    return "blobs/sha256/" + digest[7:]


def verify(
    what: str,
    path: str,
    *,
    digest: str,
    size: int,
    want_digest: str | None,
    want_size: int | None,
    size_from: str,
) -> None:
    """Raise StorageError unless a blob's ``digest`` and ``size`` are the ones wanted.

    ``None`` for a wanted value means "not known": it is not checked.
    ``size_from`` names the document that gave ``want_size`` in the message.
    """
    if want_digest and digest != want_digest:
        raise StorageError(f"{what} is corrupt: its content hashes to {digest}", path=path)
    if want_size is not None and size != want_size:
        raise StorageError(f"{what} has {size} bytes, the {size_from} says {want_size}", path=path)


class HashingWriter:
    """A write-only file object that hashes and counts what passes to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes and counts what it reads from ``source``
    (and writes it to ``copy_to``, when given)."""

    def __init__(self, source: IO[bytes], *, copy_to: IO[bytes] | None = None) -> None:
        super().__init__()
        self.source = source
        self.copy_to = copy_to
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.size += n
        if self.copy_to is not None:
            self.copy_to.write(data)
        return n

    def drain(self) -> None:
        """Read (and hash) what is left: a digest covers the whole blob, trailing bytes included."""
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


__all__ = ["CHUNK", "is_sha256_hex", "blob_name", "verify", "HashingWriter", "HashingReader"]
