"""Pushing an image from the store to a registry, through the OCI export path.

The image is exported as an OCI image layout into the store's staging area
(pylxcore.transfer.oci_export: a layer pulled or imported from elsewhere
keeps the blob it came as, hard-linked, so it keeps its digest). Then each
blob the registry lacks is uploaded: a HEAD first, a cross-repository mount
from a repository of the same registry the layer was pulled from, else one
streamed PUT. The manifest goes last, so the tag only ever names a complete
image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pylxcore.errors import ImageNotFound, SpecError, StorageError
from pylxcore.store import rmtree
from pylxcore.transfer.digest import blob_name
from pylxcore.transfer.registry.client import RegistryClient
from pylxcore.transfer.registry.reference import Reference

if TYPE_CHECKING:
    from pylxcore.engine import Engine


def _read_layout(layout: Path) -> tuple[bytes, str, dict[str, Any]]:
    """(manifest body, media type, parsed manifest) of the one image in ``layout``."""
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][-1]
    body = (layout / blob_name(entry["digest"])).read_bytes()
    return body, entry["mediaType"], json.loads(body)


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


def _upload(client: RegistryClient, repo: str, desc: dict[str, Any], path: Path, sources: list[str]) -> bool:
    """Put blob ``desc`` into ``repo`` unless it is there; whether bytes were sent."""
    digest = desc["digest"]
    if client.has_blob(repo, digest):
        return False
    url = None
    for source in [s for s in sources if s != repo][:1]:
        url = client.mount_blob(repo, digest, source)
        if url is None:
            return False
        # Not mounted (the registry offers no mount from there): upload into the session it opened.
    with open(path, "rb") as fh:
        client.upload_blob(repo, digest, desc["size"], fh, url)
    return True


def push(engine: Engine, image: str, dest: Reference, client: RegistryClient) -> str:
    """Push store image ``image`` to ``dest``; return the manifest's digest.

    Raises ImageNotFound (no such local image), SpecError (``dest`` has a digest), RegistryError (auth, TLS,
    transport, the registry refused), StorageError.
    """
    from pylxcore.transfer.oci_export import export_image

    if dest.digest is not None:
        raise SpecError(f"cannot push to {dest}: a push names a tag, not a digest", key="dest")
    staging = engine.store.staging_dir("push")
    try:
        layout = export_image(engine, image, staging / "layout", format="oci")
        try:
            body, media_type, manifest = _read_layout(layout)
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise StorageError(
                f"cannot read the exported layout of {image!r}: {err}", path=str(layout)
            ) from err
        sources = _mount_sources(engine, dest.registry) if dest.registry != "docker.io" else {}
        for desc in [*manifest.get("layers", []), manifest["config"]]:
            digest = desc["digest"]
            _upload(client, dest.repository, desc, layout / blob_name(digest), sources.get(digest, []))
        return client.put_manifest(dest.repository, dest.tag or "latest", body, media_type)
    finally:
        rmtree(staging)


__all__ = ["push"]
