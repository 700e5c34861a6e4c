"""Container registries (Registry API v2): pulling and pushing images, credentials.

- ``reference``: image references as Docker normalizes them (``busybox`` is
  ``docker.io/library/busybox:latest``).
- ``client``: the HTTP client: TLS, token and basic auth, manifests, blobs.
- ``auth``: credentials in docker's ``config.json`` and containers' ``auth.json``.
- ``pull`` / ``push``: images between a registry and the store, through the
  same OCI import/export path as archives (pylxcore.transfer.oci_import/oci_export).
"""
