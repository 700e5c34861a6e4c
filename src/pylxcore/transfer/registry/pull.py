"""Pulling an image from a registry into the store, through the OCI import path.

A registry is one more Archive for pylxcore.transfer.oci_import: its
``index.json`` names the one manifest chosen here (an index is resolved to
the wanted platform first), and every blob is streamed from the registry as
the import reads it, its digest and size checked while it streams. The import
skips the layers the store already has (so they are never downloaded),
stages the others and commits them only once all are in: a failure leaves
nothing in the store.
"""

from __future__ import annotations

import http.client
import io
import json
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, cast

from pylxcore.errors import RegistryError, SpecError
from pylxcore.store import canonical_json
from pylxcore.transfer.archive import Archive
from pylxcore.transfer.digest import HashingReader, blob_name
from pylxcore.transfer.imageconfig import host_platform
from pylxcore.transfer.ocispec import DOCKER_MANIFEST, INDEX_TYPES, MEDIA_INDEX, MEDIA_MANIFEST
from pylxcore.transfer.progress import Emitter, TransferProgress
from pylxcore.transfer.registry.client import RegistryClient
from pylxcore.transfer.registry.reference import Reference

if TYPE_CHECKING:
    from pylxcore.engine import Engine
    from pylxcore.images import BuiltImage
    from pylxcore.transfer.unpack import LayerBlob

ACCEPT = (MEDIA_MANIFEST, DOCKER_MANIFEST, MEDIA_INDEX, *INDEX_TYPES)
_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1"


class BlobStream(HashingReader):
    """A blob as the registry sends it, hashed and counted as it is read.

    At the end it must hash to ``digest`` and (when known) have ``size``
    bytes; more than ``size`` bytes stop it at once (a registry that never
    stops sending). Either failure, or the connection breaking, raises
    RegistryError. ``on_bytes`` (when given) is told the bytes read so far, at each read.
    """

    def __init__(
        self,
        resp: http.client.HTTPResponse,
        digest: str,
        size: int | None,
        registry: str,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(resp)
        self._resp = resp
        self._digest = digest
        self._size = size
        self._registry = registry
        self._on_bytes = on_bytes
        self._checked = False

    def _fail(self, reason: str) -> RegistryError:
        return RegistryError(
            f"blob {self._digest} from {self._registry}: {reason}", registry=self._registry, reason=reason
        )

    def readinto(self, buffer: Any) -> int:
        try:
            n = super().readinto(buffer)
        except (OSError, http.client.HTTPException) as err:
            raise self._fail(
                f"the transfer broke after {self.size} bytes ({err or type(err).__name__})"
            ) from err
        if self._size is not None and self.size > self._size:
            raise self._fail(f"the registry sent more than the {self._size} bytes the manifest gives")
        if n and self._on_bytes is not None:
            self._on_bytes(self.size)
        elif not n and not self._checked:
            self._checked = True
            if self.digest != self._digest:
                raise self._fail(f"digest mismatch: the content hashes to {self.digest}")
            if self._size is not None and self.size != self._size:
                raise self._fail(f"{self.size} bytes, the manifest gives {self._size}")
        return n

    def close(self) -> None:
        self._resp.close()
        super().close()


class RegistrySource(Archive):
    """One image of a registry repository, read as an OCI image layout."""

    def __init__(
        self,
        client: RegistryClient,
        repo: str,
        desc: dict[str, Any],
        body: bytes,
        manifest: dict[str, Any],
        on_bytes: Callable[[int], None] | None = None,
    ):
        self.client = client
        self.repo = repo
        self.on_bytes = on_bytes  # told of each blob's bytes read so far (see BlobStream)
        self._files = {
            "index.json": canonical_json({"schemaVersion": 2, "manifests": [desc]}).encode(),
            blob_name(desc["digest"]): body,
        }
        descs = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
        self._sizes = {d.get("digest"): d.get("size") for d in descs if isinstance(d, dict)}

    def exists(self, name: str) -> bool:
        return name in self._files

    def open(self, name: str) -> IO[bytes]:
        if name in self._files:
            return io.BytesIO(self._files[name])
        digest = "sha256:" + name.rpartition("/")[2]
        blob_name(digest)  # a well-formed digest, nothing else reaches a URL
        size = self._sizes.get(digest)
        resp = self.client.open_blob(self.repo, digest)
        # Unbuffered: the import reads it in big blocks, and hashes it with this stream's hash.
        blob = BlobStream(
            resp, digest, size if isinstance(size, int) else None, self.client.registry, self.on_bytes
        )
        return cast(IO[bytes], blob)


def parse_platform(platform: str | None) -> tuple[str, str, str | None]:
    """(os, architecture, variant) of ``"os/arch[/variant]"``; None means this host. Raises SpecError."""
    if platform is None:
        arch, variant = host_platform()
        return "linux", arch, variant
    parts = platform.split("/") if isinstance(platform, str) else []
    if len(parts) not in (2, 3) or not all(parts):
        raise SpecError(
            f"invalid platform {platform!r}: expected os/arch[/variant], e.g. linux/amd64", key="platform"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _pick(index: dict[str, Any], platform: tuple[str, str, str | None], what: str) -> dict[str, Any]:
    """The descriptor of the index's manifest for ``platform``. Raises RegistryError."""
    os_name, arch, variant = platform
    found = []
    for m in index.get("manifests") or []:
        p = m.get("platform") if isinstance(m, dict) else None
        if not isinstance(p, dict) or p.get("os") != os_name or p.get("architecture") != arch:
            continue
        if variant and p.get("variant") not in (variant, None):
            continue
        found.append(m)
    if variant is None and len(found) > 1:
        # No variant asked: the plainest entry (Docker prefers e.g. arm64 v8 for arm64).
        found.sort(key=lambda m: str(m["platform"].get("variant") or ""))
    if not found:
        offered = sorted(
            "/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
            for m in index.get("manifests") or []
            if isinstance(m, dict) and isinstance(p := m.get("platform"), dict)
        )
        want = "/".join(x for x in (os_name, arch, variant) if x)
        raise RegistryError(
            f"{what} has no image for {want} (it has: {', '.join(offered) or 'none'})",
            reason=f"no manifest for {want}",
        )
    return dict(found[0])


def _json(body: bytes, what: str, registry: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as err:
        raise RegistryError(f"{what} is not JSON: {err}", registry=registry, reason=str(err)) from err
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object", registry=registry, reason="not an object")
    return value


def resolve(
    client: RegistryClient, ref: Reference, platform: str | None
) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """(descriptor, body, parsed) of the image manifest ``ref`` names for ``platform``.

    Raises ImageNotFound, RegistryError, SpecError (bad platform).
    """
    wanted = parse_platform(platform)
    reference = ref.reference
    for _ in range(3):  # an index may name an index; no further
        body, media, digest = client.get_manifest(ref.repository, reference, ACCEPT)
        doc = _json(body, f"manifest {ref}", client.registry)
        media = doc.get("mediaType") or media
        if media.startswith(_SCHEMA1) or doc.get("schemaVersion") == 1:
            raise RegistryError(
                f"{ref} is a Docker schema 1 image, which is not supported",
                registry=client.registry,
                reason=media,
            )
        if media in INDEX_TYPES or "manifests" in doc:
            reference = _pick(doc, wanted, str(ref))["digest"]
            continue
        if not isinstance(doc.get("config"), dict):
            raise RegistryError(f"manifest {ref} names no config", registry=client.registry, reason=media)
        return {"mediaType": media or MEDIA_MANIFEST, "digest": digest, "size": len(body)}, body, doc
    raise RegistryError(f"{ref}: image indexes nested too deeply", registry=client.registry, reason="nesting")


def pull(
    engine: Engine,
    ref: Reference,
    client: RegistryClient,
    *,
    platform: str | None,
    progress: TransferProgress = None,
) -> BuiltImage:
    """Pull ``ref`` with ``client`` into ``engine``'s store and tag it ``ref.store_name``.

    ``progress``: see pylxcore.transfer.progress. Raises ImageNotFound (no
    such repository, tag or digest), RegistryError (auth, TLS, transport,
    digest mismatch), StorageError (corrupt or unsupported content),
    SpecError (a config field pylxcore refuses). Nothing of a failed pull
    stays in the store.
    """
    from pylxcore.transfer.oci_import import import_source

    emitter = Emitter(progress, "pull", str(ref))
    try:
        desc, body, manifest = resolve(client, ref, platform)
        source = RegistrySource(client, ref.repository, desc, body, manifest)
        total = len(manifest.get("layers") or [])

        def notify(i: int, blob: LayerBlob, state: str) -> None:
            what = (i + 1, total, blob.digest or "", blob.size)
            if state == "exists":
                emitter.exists(*what)
            elif state == "start":
                source.on_bytes = emitter.layer(*what)
            else:
                emitter.layer_done(*what)

        image, _ = import_source(engine, source, Path(str(ref)), ref.store_name, notify)
        emitter.done()
        return image
    finally:
        emitter.close()


__all__ = ["ACCEPT", "BlobStream", "RegistrySource", "parse_platform", "resolve", "pull"]
