"""Images in and out of the store: OCI layouts and archives, docker archives, LXC and Incus exports.

- ``oci_export``: an image as an OCI image layout or oci-archive (streamed to a file or a pipe).
- ``docker_archive``: an image as a ``docker save`` archive, which Docker 20.10 loads.
- ``layerblob``: a layer as a blob for export: the one it came as, or a tar written now.
- ``pgzip``: gzip on every core (one standard member, compressed in parallel chunks).
- ``oci_import``: OCI layouts, oci-archives and ``docker save`` archives into the store.
- ``lxcimage``: flattened exports (LXC's image pair, Incus's tarball, a rootfs tar).
- ``imageconfig``: image record <-> OCI config (runtime config, history, platform).
- ``layertar``: writing layer trees as reproducible tars (whiteouts, xattr headers).
- ``unpack``: unpacking a layer tar safely into overlayfs upper format.
- ``archive``: reading files out of an archive directory or tar.
- ``digest``: sha256 digests of streams, blob paths, verification.
- ``ocispec``: media types and annotation names.
- ``registry``: registries (Registry API v2): pull, push, credentials.
- ``progress``: pull and push progress: events, the logger, the live display (tqdm).

Nothing is imported here: ``import pylxcore`` does not pay for the formats.
"""
