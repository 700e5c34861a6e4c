"""Exporting images as OCI image layouts and oci-archives, reproducibly.

Export writes one gzip layer tar per pylxcore layer (see layertar). The tars
are reproducible: entries sorted, every mtime set to one fixed epoch
(``$SOURCE_DATE_EPOCH``, else 0), numeric owners without names, PAX format,
and gzip headers without a name or a time. Exporting the same image twice
gives byte-identical blobs, hence the same digests.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pylxcore.errors import SpecError, StorageError
from pylxcore.spec import validate_image_ref
from pylxcore.store import atomic_write, canonical_json, rmtree, sha256_hex
from pylxcore.transfer.digest import HashingWriter
from pylxcore.transfer.imageconfig import oci_config, oci_platform
from pylxcore.transfer.layertar import TreeTarWriter, layer_trees, write_layer_tar
from pylxcore.transfer.ocispec import (
    ANNOTATION_IMAGE_ID,
    ANNOTATION_LIMITS,
    ANNOTATION_REF_NAME,
    LAYOUT_VERSION,
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_LAYER_GZIP,
    MEDIA_MANIFEST,
)

if TYPE_CHECKING:
    from pylxcore.engine import Engine

_OCI_LAYOUT = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})


def source_epoch() -> int:
    """The fixed time written into exported tars and configs: ``$SOURCE_DATE_EPOCH``, else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def _write_blob(blobs: Path, staging: Path, data: bytes) -> dict[str, Any]:
    """Store ``data`` as a blob of the layout; return its digest and size."""
    digest = "sha256:" + sha256_hex(data)
    target = blobs / digest[7:]
    if not target.exists():
        tmp = staging / (digest[7:] + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return {"digest": digest, "size": len(data)}


def _export_layer(fs: Path, blobs: Path, staging: Path, mtime: int) -> tuple[dict[str, Any], str]:
    """Write one layer blob; return (its descriptor, its diff_id)."""
    tmp = staging / "layer.tmp"
    with open(tmp, "wb") as out:
        compressed = HashingWriter(out)
        # No file name and a zero time in the gzip header: the same tar, the same blob.
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
            uncompressed = HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                write_layer_tar(fs, tar, mtime=mtime)
        out.flush()
        os.fsync(out.fileno())
    target = blobs / compressed.digest[7:]
    if target.exists():
        tmp.unlink()
    else:
        os.replace(tmp, target)
    descriptor = {"mediaType": MEDIA_LAYER_GZIP, "digest": compressed.digest, "size": compressed.size}
    return descriptor, uncompressed.digest


def _ref_name(engine: Engine, ref: str, record: dict[str, Any]) -> str | None:
    """The name:tag to put in the layout: ``ref`` itself if it names the image, else its first tag."""
    refs = engine.store.read_refs()
    with contextlib.suppress(SpecError, TypeError):
        name = validate_image_ref(ref)
        if refs.get(name) == record["id"]:
            return name
    tags = sorted(n for n, i in refs.items() if i == record["id"])
    return tags[0] if tags else None


def _write_layout(engine: Engine, ref: str, layout: Path, staging: Path) -> dict[str, Any]:
    """Write the image's blobs into ``layout`` (an existing directory); return its index entry."""
    store = engine.store
    record = engine.images.record(ref)
    epoch = source_epoch()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer_descs: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for key, fs in zip(record["layers"], layer_trees(store, record, ref)):
        try:
            desc, diff_id = _export_layer(fs, blobs, staging, epoch)
        except OSError as err:
            raise StorageError(f"cannot export layer {key}: {err}", path=str(fs)) from err
        layer_descs.append(desc)
        diff_ids.append(diff_id)
    config = oci_config(store, record, diff_ids, epoch)
    config_desc = {"mediaType": MEDIA_CONFIG, **_write_blob(blobs, staging, canonical_json(config).encode())}
    annotations = {ANNOTATION_IMAGE_ID: record["id"]}
    limits = record["config"].get("limits") or {}
    if limits:
        annotations[ANNOTATION_LIMITS] = canonical_json(limits)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
        "annotations": annotations,
    }
    entry: dict[str, Any] = {
        "mediaType": MEDIA_MANIFEST,
        **_write_blob(blobs, staging, canonical_json(manifest).encode()),
        "platform": oci_platform(),
    }
    name = _ref_name(engine, ref, record)
    if name:
        entry["annotations"] = {ANNOTATION_REF_NAME: name}
    return entry


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
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    (layout / "oci-layout").write_text(_OCI_LAYOUT)
    atomic_write(index_path, canonical_json(index))


def _tar_layout(layout: Path, target: Path, epoch: int) -> None:
    """Write the layout directory as a reproducible (sorted, fixed-time) tar at ``target``."""
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        writer = TreeTarWriter(tar, mtime=epoch)
        for name in ("blobs", "blobs/sha256"):
            writer.add_dir(name)
        for blob in sorted(os.listdir(layout / "blobs" / "sha256")):
            writer.add_bytes("blobs/sha256/" + blob, (layout / "blobs" / "sha256" / blob).read_bytes())
        for name in ("index.json", "oci-layout"):
            writer.add_bytes(name, (layout / name).read_bytes())


def export_image(engine: Engine, ref: str, path: Path, *, archive: bool) -> Path:
    """Export image ``ref`` as an OCI image layout at ``path``; return ``path``.

    ``archive=False`` writes a layout directory. ``path`` may be missing, an
    empty directory, or an existing OCI layout (the image is added to it,
    replacing an entry of the same name). ``archive=True`` writes the layout as
    one tar file (an "oci-archive"), replacing a file at ``path``. Either is
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
            if archive:
                if path.is_dir():
                    raise StorageError(f"{path} is a directory; an oci-archive is a file", path=str(path))
                layout = staging / "layout"
                layout.mkdir()
                _merge_index(layout, _write_layout(engine, ref, layout, staging))
                _tar_layout(layout, staging / "archive.tar", source_epoch())
                os.replace(staging / "archive.tar", path)
            elif path.is_dir() and (path / "oci-layout").exists():
                _merge_index(path, _write_layout(engine, ref, path, staging))
            else:
                if path.exists() and (not path.is_dir() or any(path.iterdir())):
                    raise StorageError(
                        f"{path} exists and is not an empty directory or an OCI layout", path=str(path)
                    )
                layout = staging / "layout"
                layout.mkdir(mode=0o755)
                _merge_index(layout, _write_layout(engine, ref, layout, staging))
                if path.exists():
                    path.rmdir()
                os.rename(layout, path)
    except OSError as err:
        raise StorageError(f"cannot export {ref!r} to {path}: {err}", path=str(path)) from err
    finally:
        rmtree(staging)
    return path


__all__ = ["source_epoch", "export_image"]
