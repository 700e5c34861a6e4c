"""Importing images: OCI layouts, oci-archives and ``docker save`` archives into the store.

Import reads an OCI image layout (a directory or an oci-archive tar, including
the layout Docker 25+ writes with ``docker save``) or a classic ``docker save``
archive (``manifest.json`` plus layer tars). Every blob is checked against
its digest while it is unpacked into the store's staging area; layers are
committed only once all of them have been verified, so a corrupt archive
leaves nothing behind. An imported layer's key is ``step_key(parent key,
{"oci_diff_id": diff_id})``: importing the same image twice adds nothing.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import time
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence

import attrs

from pylxcore._log import log
from pylxcore.build.builder import step_key
from pylxcore.errors import SpecError, StorageError
from pylxcore.spec import validate_image_ref
from pylxcore.store import Store, canonical_json, rmtree, sha256_hex
from pylxcore.store.records import HistoryStep, ImageRecord, LayerOrigin
from pylxcore.transfer.archive import Archive, open_archive
from pylxcore.transfer.digest import CHUNK, blob_name, is_sha256_hex, verify
from pylxcore.transfer.imageconfig import host_platform, record_config, record_history, record_origin
from pylxcore.transfer.ocispec import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_LIMITS,
    ANNOTATION_REF_NAME,
    INDEX_TYPES,
    MEDIA_LAYER_GZIP,
    MEDIA_LAYER_TAR,
)
from pylxcore.transfer.unpack import LayerBlob, Unpacked, unpack_layer

if TYPE_CHECKING:
    from pylxcore.engine import Engine
    from pylxcore.images import BuiltImage

_MAX_INDEX_DEPTH = 4  # an index may point at indexes; this far and no further
# Told of each layer of an import: (index, blob, "exists" | "start" | "done").
Notify = Callable[[int, LayerBlob, str], None]


@attrs.frozen
class Manifest:
    """What import needs from any of the formats."""

    config: dict[str, Any]  # the OCI image config
    layers: list[LayerBlob]  # bottom first
    ref: str | None  # the name the archive gives the image
    limits: str | None  # the io.pylxcore.runtime.limits annotation (JSON)


# ---------------------------------------------------------------------------
# Reading manifests
# ---------------------------------------------------------------------------


def _read_blob_json(source: Archive, desc: dict[str, Any]) -> Any:
    """Read and verify the small JSON blob of descriptor ``desc``."""
    name = blob_name(desc.get("digest"))
    value, raw = source.read_json(name)
    size = desc.get("size")
    verify(
        f"blob {desc['digest']}",
        name,
        digest="sha256:" + sha256_hex(raw),
        size=len(raw),
        want_digest=desc["digest"],
        want_size=size if isinstance(size, int) else None,
        size_from="descriptor",
    )
    return value


def _annotated_name(desc: dict[str, Any]) -> str | None:
    ann = desc.get("annotations") or {}
    name = ann.get(ANNOTATION_CONTAINERD_NAME) or ann.get(ANNOTATION_REF_NAME)
    return name if isinstance(name, str) and name else None


def _same_ref(a: str, b: str) -> bool:
    try:
        return validate_image_ref(a) == validate_image_ref(b)
    except SpecError:
        return a == b


def _pick_descriptor(
    source: Archive, index: dict[str, Any], wanted: str | None
) -> tuple[dict[str, Any], str | None]:
    """The image manifest to import from an index, and the name the index gives it.

    Several images: the one named ``wanted``. Several platforms: this host's.
    Raises StorageError when the choice is not clear.
    """
    ref: str | None = None
    for depth in range(_MAX_INDEX_DEPTH):
        manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
        if depth == 0 and len(manifests) > 1 and wanted:
            named = [
                m for m in manifests if _annotated_name(m) and _same_ref(_annotated_name(m) or "", wanted)
            ]
            manifests = named or manifests
        if len(manifests) > 1:
            arch, _ = host_platform()
            manifests = [
                m
                for m in manifests
                if (m.get("platform") or {}).get("architecture") in (arch, None)
                and (m.get("platform") or {}).get("os") in ("linux", None)
            ]
        if len(manifests) != 1:
            names = sorted(filter(None, (_annotated_name(m) for m in index.get("manifests") or [])))
            raise StorageError(
                f"the index lists {len(index.get('manifests') or [])} images and none or several fit"
                f" (names: {', '.join(names) or 'none'}); pass name= to pick one"
            )
        desc = manifests[0]
        ref = ref or _annotated_name(desc)
        if desc.get("mediaType") not in INDEX_TYPES:
            return desc, ref
        index = _read_blob_json(source, desc)
    raise StorageError("image indexes are nested too deeply")


def _diff_ids(config: Any) -> list[str]:
    if not isinstance(config, dict):
        raise StorageError("the image config is not a JSON object")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise StorageError("the image config has no rootfs.diff_ids list")
    for d in diff_ids:
        blob_name(d)  # a well-formed sha256 digest
    return list(diff_ids)


def _read_oci(source: Archive, wanted: str | None) -> Manifest:
    index, _ = source.read_json("index.json")
    if not isinstance(index, dict):
        raise StorageError("index.json is not an OCI image index")
    desc, ref = _pick_descriptor(source, index, wanted)
    manifest = _read_blob_json(source, desc)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise StorageError(f"manifest {desc.get('digest')} is not an image manifest")
    config = _read_blob_json(source, manifest["config"])
    layers = manifest.get("layers") or []
    diff_ids = _diff_ids(config)
    if len(layers) != len(diff_ids):
        raise StorageError(f"the manifest lists {len(layers)} layers, the config {len(diff_ids)} diff_ids")
    blobs = [
        LayerBlob(
            blob_name(d.get("digest")),
            diff_id,
            d["digest"],
            d.get("size"),
            d.get("mediaType") if isinstance(d.get("mediaType"), str) else None,
        )
        for d, diff_id in zip(layers, diff_ids)
    ]
    limits = (manifest.get("annotations") or {}).get(ANNOTATION_LIMITS)
    return Manifest(config, blobs, ref, limits)


def _read_docker(source: Archive, wanted: str | None) -> Manifest:
    entries, _ = source.read_json("manifest.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise StorageError("manifest.json is not a docker save manifest")
    if len(entries) > 1 and wanted:
        entries = [
            e for e in entries if any(_same_ref(t, wanted) for t in e.get("RepoTags") or [])
        ] or entries
    if len(entries) != 1:
        raise StorageError(f"the archive holds {len(entries)} images; pass name= to pick one")
    entry = entries[0]
    config_name = entry.get("Config")
    if not isinstance(config_name, str):
        raise StorageError("manifest.json names no image config")
    config, raw = source.read_json(config_name)
    hexpart = posixpath.basename(config_name).removesuffix(".json")
    if is_sha256_hex(hexpart) and sha256_hex(raw) != hexpart:
        raise StorageError(
            f"the image config {config_name} is corrupt: it hashes to sha256:{sha256_hex(raw)}"
        )
    diff_ids = _diff_ids(config)
    names = entry.get("Layers") or []
    if len(names) != len(diff_ids) or not all(isinstance(n, str) for n in names):
        raise StorageError(f"manifest.json lists {len(names)} layers, the config {len(diff_ids)} diff_ids")
    blobs = []
    for name, diff_id in zip(names, diff_ids):
        # Docker 25+ names layers by their blob digest: that can be checked too.
        base = posixpath.basename(name)
        digest = f"sha256:{base}" if name.startswith("blobs/sha256/") and is_sha256_hex(base) else None
        blobs.append(LayerBlob(name, diff_id, digest, None))
    tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
    ref = next((t for t in tags if wanted and _same_ref(t, wanted)), tags[0] if tags else None)
    return Manifest(config, blobs, ref, None)


def read_manifest(source: Archive, path: Path, wanted: str | None) -> Manifest:
    """The image in ``source`` (read from ``path``), whatever its format. Raises StorageError."""
    try:
        if source.exists("index.json"):
            return _read_oci(source, wanted)
        if source.exists("manifest.json"):
            return _read_docker(source, wanted)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
        raise StorageError(f"cannot read {path}: {err}", path=str(path)) from err
    raise StorageError(f"{path} is neither an OCI image layout nor a docker save archive", path=str(path))


# ---------------------------------------------------------------------------
# Into the store
# ---------------------------------------------------------------------------


def _tag_for(manifest: Manifest, wanted: str | None) -> str | None:
    """``wanted``, else the archive's own name for the image, normalized. Raises SpecError."""
    if wanted is not None or not manifest.ref:
        return wanted
    ref = manifest.ref.split("@", 1)[0]
    try:
        return validate_image_ref(ref)
    except SpecError as err:
        raise SpecError(
            f"the archive names the image {ref!r}, which is not valid here ({err.reason}); pass name=",
            key="name",
        ) from err


def layer_keys(diff_ids: Sequence[str]) -> list[str]:
    """The store keys of a foreign image's layers, bottom first: each is
    ``step_key(parent key, {"oci_diff_id": diff_id})``, so the same layers on
    the same base are the same layers, whichever archive or registry they came from."""
    keys: list[str] = []
    for diff_id in diff_ids:
        keys.append(step_key(keys[-1] if keys else None, {"oci_diff_id": diff_id}))
    return keys


def origin_of(blob: LayerBlob, unpacked: Unpacked) -> LayerOrigin:
    """The origin recorded for a layer unpacked from ``blob``: its digests and media type
    (the descriptor's, else OCI's name for what the blob turned out to be)."""
    media_type = blob.media_type or (MEDIA_LAYER_GZIP if unpacked.compressed else MEDIA_LAYER_TAR)
    return LayerOrigin(blob.diff_id, unpacked.digest, media_type, unpacked.size)


def import_layers(
    store: Store,
    blobs: Sequence[LayerBlob],
    opener: Callable[[LayerBlob], IO[bytes]],
    keys: Sequence[str],
    instructions: Sequence[str],
    notify: Notify | None = None,
) -> None:
    """Unpack and verify every layer the store lacks, then commit them, each
    with its origin and its blob as it came. Raises StorageError.

    ``opener(blob)`` opens a layer blob for reading. ``notify(i, blob,
    state)``, when given, hears of each layer: "exists" (the store has it:
    not opened), "start" (before it is opened), "done" (unpacked and checked).
    The caller holds ``lock("gc", shared=True)``. Nothing is committed unless
    every layer checked out; the staging area goes either way.
    """
    staging = store.staging_dir("import")
    try:
        staged: list[tuple[int, Path, LayerOrigin]] = []
        for i, (key, blob) in enumerate(zip(keys, blobs)):
            if store.has_layer(key):
                if notify is not None:
                    notify(i, blob, "exists")
                continue
            fs = staging / str(i) / "fs"
            fs.mkdir(parents=True)
            os.chmod(fs, 0o755)
            if notify is not None:
                notify(i, blob, "start")
            with opener(blob) as fh, open(staging / str(i) / "blob", "wb") as keep:
                unpacked = unpack_layer(fh, blob, fs, keep=keep)
            if notify is not None:
                notify(i, blob, "done")
            staged.append((i, fs, origin_of(blob, unpacked)))
        for i, fs, origin in staged:
            store.commit_layer(
                keys[i],
                fs,
                parent=keys[i - 1] if i else None,
                instruction=instructions[i],
                origin=origin,
                staged_blob=staging / str(i) / "blob",
            )
    except OSError as err:
        raise StorageError(f"cannot import a layer into {store.root}: {err}", path=str(staging)) from err
    finally:
        rmtree(staging)


def import_image(engine: Engine, path: Path, *, name: str | None) -> BuiltImage:
    """Import the image at ``path`` and tag it; return it (see import_archive)."""
    return import_archive(engine, path, name=name)[0]


def import_stream(engine: Engine, stream: IO[bytes], *, name: str | None) -> tuple[BuiltImage, str | None]:
    """Import an archive read from ``stream`` (a pipe: ``load`` from stdin); see import_archive.

    The archive is spooled to the store's staging area first (a tar's index
    is at no fixed place), so memory stays small whatever its size.
    Raises what import_archive raises.
    """
    staging = engine.store.staging_dir("load")
    try:
        spooled = staging / "archive.tar"
        try:
            with open(spooled, "wb") as out:
                shutil.copyfileobj(stream, out, CHUNK)
        except OSError as err:
            raise StorageError(f"cannot read the archive: {err}", path=str(spooled)) from err
        return import_archive(engine, spooled, name=name)
    finally:
        rmtree(staging)


def import_archive(engine: Engine, path: Path, *, name: str | None) -> tuple[BuiltImage, str | None]:
    """Import the image at ``path`` and tag it; return it and the tag it got (None: untagged).

    ``path`` is an OCI image layout directory, an oci-archive tar, or a
    ``docker save`` archive (or its unpacked directory). ``name`` tags the
    image (and picks it when the archive holds several); without it, the name
    the archive gives the image is used (the index's ``io.containerd.image.name``
    or ``org.opencontainers.image.ref.name`` annotation, or docker's
    ``RepoTags``); with neither, the image stays untagged (``prune`` removes it).

    Raises SpecError (``name``, or the archive's own name, is not a valid
    image reference: pass ``name=``), StorageError (unreadable, unsupported or
    corrupt input, a layer tar with paths leading outside; nothing of the
    image is left in the store).
    """
    path = Path(path)
    wanted = validate_image_ref(name) if name is not None else None
    source = open_archive(path)
    try:
        return import_source(engine, source, path, wanted)
    finally:
        source.close()


def import_source(
    engine: Engine, source: Archive, path: Path, wanted: str | None, notify: Notify | None = None
) -> tuple[BuiltImage, str | None]:
    """The body of import_archive for any Archive (a registry is one too: see
    transfer.registry.pull); ``path`` names it in messages, ``wanted`` is the
    validated tag, ``notify`` hears of each layer (see import_layers). Raises
    as import_archive; the caller closes ``source``."""
    store = engine.store
    manifest = read_manifest(source, path, wanted)
    tag = _tag_for(manifest, wanted)
    arch, _ = host_platform()
    if manifest.config.get("architecture") not in (None, arch):
        log(
            "warning",
            "image %s is for %s, this host is %s",
            path,
            manifest.config.get("architecture"),
            arch,
        )
    if not manifest.layers:
        raise StorageError(f"the image in {path} has no layers", path=str(path))
    keys = layer_keys([blob.diff_id for blob in manifest.layers])
    history, instructions = record_history(manifest.config, keys)
    config = record_config(manifest.config, manifest.limits)
    image_id = "sha256:" + sha256_hex(canonical_json({"layers": keys, "config": config}))
    record = ImageRecord(
        id=image_id,
        layers=tuple(keys),
        chain=keys[-1],
        config=config,
        history=tuple(HistoryStep.from_json(h) for h in history),
        base="import",
        created=time.time(),
        origin=record_origin(manifest.config),
    )
    # Shared gc lock: prune cannot take layers this image stands on before its record
    # exists, nor the image itself (maybe untagged) before it is returned.
    with store.lock("gc", shared=True):
        import_layers(store, manifest.layers, lambda blob: source.open(blob.name), keys, instructions, notify)
        store.put_image(record)
        if tag:
            with store.lock("refs"):
                refs = store.read_refs()
                refs[tag] = image_id
                store.write_refs(refs)
        return engine.images.get(image_id), tag


__all__ = [
    "Manifest",
    "read_manifest",
    "layer_keys",
    "origin_of",
    "import_layers",
    "import_image",
    "import_archive",
    "import_source",
    "import_stream",
]
