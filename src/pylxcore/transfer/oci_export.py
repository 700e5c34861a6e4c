"""Exporting images as OCI image layouts, oci-archives and docker-archives, reproducibly.

Each layer is one blob: the one it came as, for a layer imported from
elsewhere (so the same digests go back out), else a gzip layer tar written
from its tree (see layerblob, layertar). Those tars are reproducible:
entries sorted, every mtime set to one fixed epoch (``$SOURCE_DATE_EPOCH``,
else 0), numeric owners without names, PAX format, and gzip headers without
a name or a time. Exporting the same image twice gives byte-identical blobs,
hence the same digests. Archives stream: blobs are read from disk while the
tar is written, to a file or to a pipe (``save`` to stdout).
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

import attrs

from pylxcore.errors import SpecError, StorageError
from pylxcore.spec import validate_image_ref
from pylxcore.store import atomic_write, canonical_json, rmtree, sha256_hex
from pylxcore.store.records import ImageRecord
from pylxcore.transfer.imageconfig import oci_config, oci_platform
from pylxcore.transfer.layerblob import BlobFile, add_blob_file, layer_blob, place_blob_file
from pylxcore.transfer.layertar import TreeTarWriter
from pylxcore.transfer.ocispec import (
    ANNOTATION_IMAGE_ID,
    ANNOTATION_LIMITS,
    ANNOTATION_REF_NAME,
    LAYOUT_VERSION,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
)

if TYPE_CHECKING:
    from pylxcore.engine import Engine

_OCI_LAYOUT = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})


def source_epoch() -> int:
    """The fixed time written into exported tars and configs: ``$SOURCE_DATE_EPOCH``, else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def _ref_name(engine: Engine, ref: str, record: ImageRecord) -> str | None:
    """The name:tag to put in the layout: ``ref`` itself if it names the image, else its first tag."""
    refs = engine.store.read_refs()
    with contextlib.suppress(SpecError, TypeError):
        name = validate_image_ref(ref)
        if refs.get(name) == record.id:
            return name
    tags = sorted(n for n, i in refs.items() if i == record.id)
    return tags[0] if tags else None


@attrs.frozen
class Prepared:
    """An image ready to be written in any format: its layer blobs and its config."""

    record: ImageRecord
    name: str | None  # the name:tag the archive gives it
    layers: list[BlobFile]  # bottom first
    config: bytes  # the image config (canonical JSON)
    epoch: int  # the time written into tars (see source_epoch)

    @property
    def config_digest(self) -> str:
        return "sha256:" + sha256_hex(self.config)

    def manifest(self) -> bytes:
        """The OCI image manifest (canonical JSON): pylxcore's limits and id ride as annotations."""
        annotations = {ANNOTATION_IMAGE_ID: self.record.id}
        limits = self.record.config.get("limits") or {}
        if limits:
            annotations[ANNOTATION_LIMITS] = canonical_json(limits)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": self.config_digest, "size": len(self.config)},
            "layers": [blob.descriptor() for blob in self.layers],
            "annotations": annotations,
        }
        return canonical_json(manifest).encode()

    def index_entry(self, manifest: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "mediaType": MEDIA_MANIFEST,
            "digest": "sha256:" + sha256_hex(manifest),
            "size": len(manifest),
            "platform": oci_platform(),
        }
        if self.name:
            entry["annotations"] = {ANNOTATION_REF_NAME: self.name}
        return entry


def prepare(engine: Engine, ref: str, staging: Path, *, gzipped: bool) -> Prepared:
    """Image ``ref``'s blobs (kept ones as they are, others written into
    ``staging``) and config. The caller holds ``lock("gc", shared=True)``.
    Raises ImageNotFound, StorageError."""
    store = engine.store
    record = engine.images.record(ref)
    epoch = source_epoch()

    def one(key: str) -> BlobFile:
        try:
            return layer_blob(store, key, staging, gzipped=gzipped, mtime=epoch)
        except OSError as err:
            raise StorageError(f"cannot export layer {key}: {err}", path=str(store.layer_dir(key))) from err

    # Layers are written side by side: zlib and hashlib release the GIL, so
    # an image of several layers is compressed on several cores.
    with ThreadPoolExecutor(max_workers=max(1, min(len(record.layers), os.cpu_count() or 1))) as pool:
        layers = list(pool.map(one, record.layers))
    config = oci_config(store, record, [blob.diff_id for blob in layers], epoch)
    return Prepared(record, _ref_name(engine, ref, record), layers, canonical_json(config).encode(), epoch)


def _write_layout(prepared: Prepared, layout: Path, staging: Path) -> dict[str, Any]:
    """Write the image's blobs into ``layout`` (an existing directory); return its index entry."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for blob in prepared.layers:
        place_blob_file(blob, blobs / blob.digest[7:], staging=staging)
    manifest = prepared.manifest()
    for data in (prepared.config, manifest):
        target = blobs / sha256_hex(data)
        if not target.exists():
            tmp = staging / (target.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    return prepared.index_entry(manifest)


def _index(entries: list[dict[str, Any]]) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}).encode()


def _merge_index(layout: Path, entry: dict[str, Any]) -> None:
    """Write ``index.json`` with ``entry``, replacing an entry of the same ref name."""
    index_path = layout / "index.json"
    manifests: list[dict[str, Any]] = []
    if index_path.exists():
        try:
            manifests = list(json.loads(index_path.read_text()).get("manifests") or [])
        except (OSError, ValueError, AttributeError) as err:
            raise StorageError(
                f"{index_path} is not a readable OCI index: {err}", path=str(index_path)
            ) from err
    name = (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    manifests = [
        m
        for m in manifests
        if m.get("digest") != entry["digest"]
        and (name is None or (m.get("annotations") or {}).get(ANNOTATION_REF_NAME) != name)
    ]
    manifests.append(entry)
    (layout / "oci-layout").write_text(_OCI_LAYOUT)
    atomic_write(index_path, _index(manifests).decode())


def write_oci_archive(prepared: Prepared, out: IO[bytes]) -> None:
    """Write the image as an oci-archive to ``out`` (a file or a pipe), streaming:
    a reproducible tar (sorted, fixed times) whose blobs are read from disk
    as they are written. Raises StorageError, OSError."""
    manifest = prepared.manifest()
    small = {sha256_hex(data): data for data in (prepared.config, manifest)}
    files = {blob.digest[7:]: blob for blob in prepared.layers}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = TreeTarWriter(tar, mtime=prepared.epoch)
        for name in ("blobs", "blobs/sha256"):
            writer.add_dir(name)
        for hexpart in sorted({*small, *files}):
            if hexpart in small:
                writer.add_bytes("blobs/sha256/" + hexpart, small[hexpart])
            else:
                add_blob_file(writer, "blobs/sha256/" + hexpart, files[hexpart])
        writer.add_bytes("index.json", _index([prepared.index_entry(manifest)]))
        writer.add_bytes("oci-layout", _OCI_LAYOUT.encode())


Writer = Callable[[Prepared, IO[bytes]], None]


def _archive_writer(fmt: str) -> tuple[Writer, bool]:
    """(the function that writes ``fmt``, whether its layers are gzipped)."""
    if fmt == "docker-archive":
        from pylxcore.transfer.docker_archive import write_docker_archive

        return write_docker_archive, False
    return write_oci_archive, True


def export_stream(engine: Engine, ref: str, out: IO[bytes], *, format: str) -> None:  # noqa: A002
    """Write image ``ref`` to the binary stream ``out`` as ``format`` ("oci-archive"
    or "docker-archive"): ``save`` to stdout. Layers are staged in the store's
    tmp/ first (a tar member's size comes before its bytes); memory stays
    small whatever their size. Raises ImageNotFound, StorageError."""
    write, gzipped = _archive_writer(format)
    store = engine.store
    staging = store.staging_dir("export")
    try:
        with store.lock("gc", shared=True):
            prepared = prepare(engine, ref, staging, gzipped=gzipped)
            write(prepared, out)
        out.flush()
    except OSError as err:
        raise StorageError(f"cannot export {ref!r}: {err}") from err
    finally:
        rmtree(staging)


def export_image(engine: Engine, ref: str, path: Path, *, format: str) -> Path:  # noqa: A002
    """Export image ``ref`` at ``path`` as ``format``; return ``path``.

    "oci" writes a layout directory: ``path`` may be missing, an empty
    directory, or an existing OCI layout (the image is added to it, replacing
    an entry of the same name). "oci-archive" writes the layout as one tar
    file, "docker-archive" what ``docker save`` writes (Docker 20.10's
    ``docker load`` reads it); either replaces a file at ``path``. Each is
    complete or absent: it is assembled beside ``path`` and renamed into place.

    Raises ImageNotFound, StorageError (unwritable target, a layer missing from
    the store, or a layer an OCI tar cannot express).
    """
    path = Path(path).absolute()
    store = engine.store
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise StorageError(f"cannot write to {path.parent}: {err}", path=str(path)) from err
    try:
        # Shared gc lock: prune cannot delete a layer while we read it.
        with store.lock("gc", shared=True):
            if format != "oci":
                if path.is_dir():
                    raise StorageError(f"{path} is a directory; an {format} is a file", path=str(path))
                write, gzipped = _archive_writer(format)
                prepared = prepare(engine, ref, staging, gzipped=gzipped)
                with open(staging / "archive.tar", "wb") as out:
                    write(prepared, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(staging / "archive.tar", path)
            elif path.is_dir() and (path / "oci-layout").exists():
                _merge_index(path, _write_layout(prepare(engine, ref, staging, gzipped=True), path, staging))
            else:
                if path.exists() and (not path.is_dir() or any(path.iterdir())):
                    raise StorageError(
                        f"{path} exists and is not an empty directory or an OCI layout", path=str(path)
                    )
                layout = staging / "layout"
                layout.mkdir(mode=0o755)
                prepared = prepare(engine, ref, staging, gzipped=True)
                _merge_index(layout, _write_layout(prepared, layout, staging))
                if path.exists():
                    path.rmdir()
                os.rename(layout, path)
    except OSError as err:
        raise StorageError(f"cannot export {ref!r} to {path}: {err}", path=str(path)) from err
    finally:
        rmtree(staging)
    return path


__all__ = ["source_epoch", "Prepared", "prepare", "write_oci_archive", "export_stream", "export_image"]
