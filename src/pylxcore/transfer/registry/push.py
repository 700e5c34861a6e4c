"""Pushing an image from the store to a registry, through the OCI export path.

The image's blobs are those an OCI export writes (pylxcore.transfer.oci_export.prepare:
a layer pulled or imported from elsewhere is the blob it came as, read where
the store keeps it, so it keeps its digest; a layer built here is written as
a gzip tar in the store's staging area). Each blob the registry lacks is
uploaded: a HEAD first, a cross-repository mount from a repository of the
same registry the layer was pulled from, else one streamed PUT. The manifest
goes last, so the tag only ever names a complete image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from pylxcore.errors import ImageNotFound, SpecError, StorageError
from pylxcore.store import rmtree
from pylxcore.transfer.ocispec import MEDIA_MANIFEST
from pylxcore.transfer.progress import Emitter, TransferProgress
from pylxcore.transfer.registry.client import RegistryClient
from pylxcore.transfer.registry.reference import Reference

if TYPE_CHECKING:
    from pylxcore.engine import Engine


def _mount_sources(engine: Engine, registry: str) -> dict[str, list[str]]:
    """blob digest -> repositories of ``registry`` that hold it, as far as the
    store knows: those its images of that registry were pulled from."""
    prefix = registry + "/"
    sources: dict[str, list[str]] = {}
    for name in sorted(engine.store.read_refs()):
        if not name.startswith(prefix):
            continue
        repo = name[len(prefix) :].rpartition(":")[0]
        try:
            record = engine.images.record(name)
            origins = [engine.store.get_layer(key).origin for key in record.layers]
        except (ImageNotFound, StorageError):
            continue  # removed meanwhile: no source
        for origin in origins:
            if origin is not None and repo not in sources.setdefault(origin.digest, []):
                sources[origin.digest].append(repo)
    return sources


class _Counted:
    """A blob file as http.client reads it for an upload, telling ``moved`` the
    bytes read so far (back to 0 when an authentication round sends it again)."""

    def __init__(self, fh: IO[bytes], moved: Callable[[int], None]) -> None:
        self._fh = fh
        self._moved = moved
        self._done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if data:
            self._done += len(data)
            self._moved(self._done)
        return data

    def seek(self, pos: int) -> int:
        self._done = pos
        return self._fh.seek(pos)


def _upload(
    client: RegistryClient, repo: str, desc: dict[str, Any], data: Path | bytes, sources: list[str]
) -> Callable[[Callable[[int], None]], None] | None:
    """Blob ``desc`` into ``repo``: None when nothing needs to move (the registry has
    it, or mounted it from a repository of ``sources``), else the upload to
    run, given what to tell of the bytes sent so far."""
    digest = desc["digest"]
    if client.has_blob(repo, digest):
        return None
    url = None
    for source in [s for s in sources if s != repo][:1]:
        url = client.mount_blob(repo, digest, source)
        if url is None:
            return None
        # Not mounted (the registry offers no mount from there): upload into the session it opened.

    def upload(moved: Callable[[int], None]) -> None:
        with open(data, "rb") if isinstance(data, Path) else io.BytesIO(data) as fh:
            client.upload_blob(repo, digest, desc["size"], _Counted(fh, moved), url)  # type: ignore[arg-type]

    return upload


def push(
    engine: Engine, image: str, dest: Reference, client: RegistryClient, progress: TransferProgress = None
) -> str:
    """Push store image ``image`` to ``dest``; return the manifest's digest.

    The blobs are sent from where they are: a kept blob from the store, a
    layer pylxcore built from a gzip tar written in the store's staging area
    (see oci_export.prepare); nothing is copied first. ``progress``: see
    pylxcore.transfer.progress.

    Raises ImageNotFound (no such local image), SpecError (``dest`` has a digest), RegistryError (auth, TLS,
    transport, the registry refused), StorageError.
    """
    from pylxcore.transfer.oci_export import prepare

    if dest.digest is not None:
        raise SpecError(f"cannot push to {dest}: a push names a tag, not a digest", key="dest")
    emitter = Emitter(progress, "push", str(dest))
    store = engine.store
    staging = store.staging_dir("push")
    try:
        # Shared gc lock: prune cannot take a kept blob while it is sent.
        with store.lock("gc", shared=True):
            prepared = prepare(engine, image, staging, gzipped=True)
            body = prepared.manifest()
            sources = _mount_sources(engine, dest.registry) if dest.registry != "docker.io" else {}
            total = len(prepared.layers)
            for i, blob in enumerate(prepared.layers, 1):
                what = (i, total, blob.digest, blob.size)
                upload = _upload(
                    client, dest.repository, blob.descriptor(), blob.path, sources.get(blob.digest, [])
                )
                if upload is None:
                    emitter.exists(*what)
                    continue
                upload(emitter.layer(*what))
                emitter.layer_done(*what)
            config = {"digest": prepared.config_digest, "size": len(prepared.config)}
            upload = _upload(client, dest.repository, config, prepared.config, [])
            if upload is not None:
                upload(lambda done: None)
            digest = client.put_manifest(dest.repository, dest.tag or "latest", body, MEDIA_MANIFEST)
        emitter.done()
        return digest
    except OSError as err:
        raise StorageError(f"cannot read the blobs of {image!r}: {err}", path=str(staging)) from err
    finally:
        emitter.close()
        rmtree(staging)


__all__ = ["push"]
