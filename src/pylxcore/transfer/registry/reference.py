"""Image references as Docker normalizes them.

``busybox`` is ``docker.io/library/busybox:latest``; ``ns/app`` is
``docker.io/ns/app:latest``; the first component is a registry host when it
holds a ``.`` or a ``:`` or is ``localhost``; ``@sha256:…`` pins a manifest.
"""

from __future__ import annotations

import attrs

from pylxcore.errors import SpecError
from pylxcore.spec import validate_image_ref
from pylxcore.transfer.digest import is_sha256_hex

DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HUB_API = "registry-1.docker.io"


@attrs.frozen
class Reference:
    """A fully qualified image reference: ``registry/repository[:tag][@digest]``."""

    registry: str  # host[:port], e.g. "docker.io", "localhost:5000"
    repository: str  # e.g. "library/busybox"
    tag: str | None
    digest: str | None  # "sha256:<hex>" when pinned

    @property
    def api_host(self) -> str:
        """The host[:port] the API lives at (Docker Hub's is not docker.io)."""
        return _HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def local_name(self) -> str:
        """The name:tag the store gives the image, Docker's familiar form
        (``busybox:latest``, ``localhost:5000/team/web:1.0``). A reference
        pinned by digest alone has no tag: its tag is ``latest``."""
        repo = self.repository
        if self.registry == DOCKER_HUB:
            name = repo.removeprefix("library/")
        else:
            name = f"{self.registry}/{repo}"
        return f"{name}:{self.tag or 'latest'}"

    @property
    def store_name(self) -> str:
        """The name:tag a pull tags in the store: ``local_name``, or for a
        reference pinned by digest ``NAME:sha256-<hex>`` (a tag names one
        manifest there, so a digest base is pulled once and found again)."""
        if self.digest is None:
            return self.local_name
        name = self.local_name.rpartition(":")[0]
        return f"{name}:sha256-{self.digest[7:]}"

    def with_tag(self, tag: str) -> Reference:
        return attrs.evolve(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(ref: str) -> Reference:
    """The fully qualified form of ``ref`` (``docker://`` prefix allowed).

    Raises SpecError (key ``"ref"``) for anything Docker would not accept.
    """
    if not isinstance(ref, str):
        raise SpecError(f"expected an image reference, got {type(ref).__name__}", key="ref")
    text = ref.removeprefix("docker://")
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not digest.startswith("sha256:") or not is_sha256_hex(digest[7:]):
            raise SpecError(f"invalid digest in {ref!r}: expected sha256:<64 hex digits>", key="ref")
    slash = text.rfind("/")
    has_tag = text.rfind(":") > slash
    try:
        normalized = validate_image_ref(text)
    except SpecError as err:
        raise SpecError(err.reason, key="ref") from None
    name, _, tag = normalized.rpartition(":")
    host, _, rest = name.partition("/")
    if rest and ("." in host or ":" in host or host == "localhost"):
        registry, repository = host, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return Reference(
        registry=registry.lower(),
        repository=repository,
        tag=tag if (has_tag or digest is None) else None,
        digest=digest,
    )


__all__ = ["DOCKER_HUB", "Reference", "parse_reference"]
