"""Writing an image as a ``docker save`` archive ("docker-archive"), which Docker 20.10 loads.

Docker before 25 cannot load an OCI archive: ``docker load`` reads the
layout ``docker save`` writes (the moby image spec, v1.2)::

    manifest.json          [{"Config": "<hex>.json", "RepoTags": [...], "Layers": [".../layer.tar"]}]
    repositories           {"name": {"tag": "<top layer id>"}}  (what older loaders read)
    <config hex>.json      the image config, named by its digest
    <layer id>/layer.tar   each layer as a plain tar, in a dir named by its chain id
    <layer id>/VERSION     "1.0"
    <layer id>/json        the layer's v1 metadata: its id and its parent's

The config is the OCI one (the same JSON Docker writes); a layer id is the
hex of its OCI ChainID, so it is the same for the same stack of layers.
Layers are streamed from disk into the tar (see oci_export.Prepared).
"""

from __future__ import annotations

import tarfile
from typing import IO, TYPE_CHECKING

from pylxcore.spec import split_image_ref
from pylxcore.store import canonical_json, sha256_hex
from pylxcore.transfer.layerblob import add_blob_file
from pylxcore.transfer.layertar import TreeTarWriter

if TYPE_CHECKING:
    from pylxcore.transfer.oci_export import Prepared


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI ChainIDs of a stack of layers, bottom first: the first is its diff_id,
    each next one ``sha256(parent chain id + " " + diff_id)``."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else "sha256:" + sha256_hex(f"{out[-1]} {diff_id}"))
    return out


def write_docker_archive(prepared: Prepared, out: IO[bytes]) -> None:
    """Write the image as a ``docker save`` archive to ``out`` (a file or a pipe).

    Its layers must be plain tars (``prepare(..., gzipped=False)``). Raises
    StorageError (a blob that changed on disk), OSError.
    """
    config_name = sha256_hex(prepared.config) + ".json"
    ids = [c[7:] for c in chain_ids([blob.diff_id for blob in prepared.layers])]
    tags = [prepared.name] if prepared.name else []
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": [f"{i}/layer.tar" for i in ids]}]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = TreeTarWriter(tar, mtime=prepared.epoch)
        parent = None
        for layer_id, blob in zip(ids, prepared.layers):
            if blob.compressed:  # (a bug: prepare() was asked for gzip layers)
                raise ValueError(f"a docker-archive layer must be a plain tar, not {blob.media_type}")
            writer.add_dir(layer_id)
            writer.add_bytes(f"{layer_id}/VERSION", b"1.0")
            v1 = {"id": layer_id, **({"parent": parent} if parent else {})}
            writer.add_bytes(f"{layer_id}/json", canonical_json(v1).encode())
            add_blob_file(writer, f"{layer_id}/layer.tar", blob)
            parent = layer_id
        writer.add_bytes(config_name, prepared.config)
        writer.add_bytes("manifest.json", canonical_json(manifest).encode())
        if prepared.name and ids:
            repository, tag = split_image_ref(prepared.name)
            writer.add_bytes("repositories", canonical_json({repository: {tag: ids[-1]}}).encode())


__all__ = ["chain_ids", "write_docker_archive"]
