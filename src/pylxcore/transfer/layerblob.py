"""One layer of an image as a blob file for export: the blob it came as, or one written now.

A layer imported (or pulled) from elsewhere keeps the blob it came as
(``layers/<hex>/blob``, see pylxcore.store): exporting it gives back the same
bytes, so the same digests, and the re-exported image shares its base layers
with the original. Other layers are written from their trees as
reproducible tars (see layertar), gzip-compressed on every core (see
pgzip) and hashed while they are written: no blob is ever held in memory,
whatever its size.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from pathlib import Path
from typing import IO

import attrs

from pylxcore.errors import StorageError
from pylxcore.store import Store
from pylxcore.transfer.digest import CHUNK, HashingReader, HashingWriter
from pylxcore.transfer.layertar import TreeTarWriter, write_layer_tar
from pylxcore.transfer.ocispec import MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, OCI_LAYER_TYPES
from pylxcore.transfer.pgzip import ParallelGzipWriter


@attrs.frozen
class BlobFile:
    """A layer blob on disk and its descriptor's fields."""

    path: Path  # the bytes: in the store (a kept blob) or in the export's staging area
    digest: str
    size: int
    media_type: str  # OCI's name
    diff_id: str  # the digest of the uncompressed tar

    @property
    def compressed(self) -> bool:
        return self.media_type != MEDIA_LAYER_TAR

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _fsync_close(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _written_tar(fs: Path, target: Path, *, gzipped: bool, mtime: int) -> BlobFile:
    """Write the tree ``fs`` as a layer tar (gzip-compressed or not) at ``target``."""
    out = open(target, "wb")
    try:
        compressed = HashingWriter(out)
        if gzipped:
            # On every core; no file name and a zero time in the gzip header: the same tar, the same blob.
            with ParallelGzipWriter(compressed) as gz:
                plain = HashingWriter(gz)
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    write_layer_tar(fs, tar, mtime=mtime)
        else:
            plain = compressed
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                write_layer_tar(fs, tar, mtime=mtime)
    finally:
        _fsync_close(out)
    media_type = MEDIA_LAYER_GZIP if gzipped else MEDIA_LAYER_TAR
    return BlobFile(target, compressed.digest, compressed.size, media_type, plain.digest)


def _gunzipped(kept: Path, diff_id: str, target: Path) -> BlobFile:
    """The uncompressed tar of the gzip blob ``kept``, checked against ``diff_id``."""
    with open(kept, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        out = open(target, "wb")
        try:
            plain = HashingWriter(out)
            shutil.copyfileobj(gz, plain, CHUNK)
        finally:
            _fsync_close(out)
    if plain.digest != diff_id:
        raise StorageError(
            f"the kept blob {kept} does not unpack to its diff_id {diff_id} (it gives {plain.digest})",
            path=str(kept),
        )
    return BlobFile(target, plain.digest, plain.size, MEDIA_LAYER_TAR, diff_id)


def layer_blob(store: Store, key: str, staging: Path, *, gzipped: bool, mtime: int) -> BlobFile:
    """The blob of layer ``key``, for an export.

    A layer with a kept blob gives it as it is (``gzipped=True``: OCI, whose
    manifests name the media type) or as its plain tar (``gzipped=False``:
    docker-archive, whose layers are plain tars). Any other layer is written
    from its tree into ``staging`` (a fresh file each call). Raises
    StorageError (a layer missing from the store or that a tar cannot carry,
    a kept blob that does not match its record) and OSError.
    """
    record = store.get_layer(key)
    if not record.path.is_dir():
        raise StorageError(f"layer {key} is missing from the store", path=str(record.path))
    origin = record.origin
    if origin is not None and record.blob is not None:
        media_type = OCI_LAYER_TYPES.get(origin.media_type, origin.media_type)
        kept = BlobFile(record.blob, origin.digest, origin.size, media_type, origin.diff_id)
        if gzipped or not kept.compressed:
            return kept
        if media_type == MEDIA_LAYER_GZIP:
            return _gunzipped(record.blob, origin.diff_id, staging / f"{key[7:]}.tar")
        # (another compression: the tree is written afresh below, with a diff_id of its own)
    suffix = ".tar.gz" if gzipped else ".tar"
    return _written_tar(record.path, staging / f"{key[7:]}{suffix}", gzipped=gzipped, mtime=mtime)


def add_blob_file(writer: TreeTarWriter, arcname: str, blob: BlobFile) -> None:
    """Stream ``blob`` into a tar as ``arcname``, checking its digest as it goes.

    Raises StorageError when the file no longer hashes to its digest (a kept
    blob changed on disk: the archive would lie about it).
    """
    with open(blob.path, "rb") as fh:
        reader = HashingReader(fh)
        writer.add_stream(arcname, reader, blob.size)  # type: ignore[arg-type]
    if reader.digest != blob.digest or reader.size != blob.size:
        raise StorageError(f"blob {blob.path} no longer hashes to {blob.digest}", path=str(blob.path))


def place_blob_file(blob: BlobFile, target: Path, *, staging: Path) -> None:
    """Put ``blob`` at ``target``: moved when it was written in ``staging``, else
    copied (never hard-linked: a blob the store keeps must not change with a
    file its user can write). Raises OSError."""
    if target.exists():
        return
    if blob.path.parent == staging:
        os.replace(blob.path, target)
        return
    tmp = staging / (target.name + ".tmp")
    shutil.copyfile(blob.path, tmp)
    os.replace(tmp, target)


__all__ = ["BlobFile", "layer_blob", "add_blob_file", "place_blob_file"]
