"""The names the OCI image spec (and Docker's formats) give things: media types, annotations."""

from __future__ import annotations

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
# Layer media types an OCI manifest writes, for the Docker names of the same thing.
OCI_LAYER_TYPES = {DOCKER_LAYER_GZIP: MEDIA_LAYER_GZIP, DOCKER_LAYER_TAR: MEDIA_LAYER_TAR}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Descriptors of these types point at another index, not at an image.
INDEX_TYPES = (MEDIA_INDEX, DOCKER_MANIFEST_LIST)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
# pylxcore's own: the image's runtime limits (no OCI field holds them) and its id.
ANNOTATION_LIMITS = "io.pylxcore.runtime.limits"
ANNOTATION_IMAGE_ID = "io.pylxcore.image.id"

# The ``oci-layout`` file of every image layout.
LAYOUT_VERSION = "1.0.0"

__all__ = [
    "MEDIA_INDEX",
    "MEDIA_MANIFEST",
    "MEDIA_CONFIG",
    "MEDIA_LAYER_GZIP",
    "MEDIA_LAYER_TAR",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_TAR",
    "OCI_LAYER_TYPES",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "ANNOTATION_REF_NAME",
    "ANNOTATION_CONTAINERD_NAME",
    "ANNOTATION_LIMITS",
    "ANNOTATION_IMAGE_ID",
    "LAYOUT_VERSION",
]
