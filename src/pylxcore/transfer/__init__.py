"""Images in and out of the store: OCI layouts and archives, LXC and Incus exports.

- ``oci_export``: an image as an OCI image layout or oci-archive.
- ``oci_import``: OCI layouts, oci-archives and ``docker save`` archives into the store.
- ``lxcimage``: flattened exports (LXC's image pair, Incus's tarball, a rootfs tar).
- ``imageconfig``: image record <-> OCI config (runtime config, history, platform).
- ``layertar``: writing layer trees as reproducible tars (whiteouts, xattr headers).
- ``unpack``: unpacking a layer tar safely into overlayfs upper format.
- ``archive``: reading files out of an archive directory or tar.
- ``digest``: sha256 digests of streams, blob paths, verification.
- ``ocispec``: media types and annotation names.

Nothing is imported here: ``import pylxcore`` does not pay for the formats.
"""
