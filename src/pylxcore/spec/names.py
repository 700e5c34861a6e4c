"""Names: the rules for image references (``name[:tag]``) and container names.

Names become file and directory names in the store, so both rules are a
little stricter than Docker's: no ``..`` anywhere.
"""

from __future__ import annotations

import re

from pylxcore.errors import SpecError
from pylxcore.spec.validate import type_name

__all__ = ["split_image_ref", "validate_container_name", "validate_image_ref"]

# Strings for re.fullmatch, whose cache compiles each on first use (see sizes.py).
_NAME_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_IMAGE_NAME_RE = rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
# A registry host (Docker's domain rule): dot-separated labels, an optional port.
_DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN_RE = rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]{{1,5}})?"
_TAG_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_CONTAINER_NAME_RE = r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}"
_MAX_REF = 128


def split_image_ref(ref: str) -> tuple[str, str]:
    """Split ``"name[:tag]"`` into the normalized ``(name, tag)``; tag defaults to ``"latest"``.

    Raises:
        TypeError: if ``ref`` is not a str.
        SpecError: (key ``"name"``) as :func:`validate_image_ref`.
    """
    if not isinstance(ref, str):
        raise TypeError(f"image reference must be a str, not {type_name(ref)}")
    allowed = (
        "expected name[:tag]: a name of lowercase letters and digits joined by single '.', '_' or '-',"
        " in '/'-separated components, and a tag of letters, digits, '_', '.', '-'"
        f" (not starting with '.' or '-'); at most {_MAX_REF} characters with the tag"
    )
    # A registry host may lead, as in Docker: "localhost:5000/team/web:1.0". The
    # tag is what follows the last ':' after the last '/'.
    slash = ref.rfind("/")
    colon_at = ref.rfind(":")
    name, colon, tag = (ref[:colon_at], ":", ref[colon_at + 1 :]) if colon_at > slash else (ref, "", "")
    if colon and not tag:
        raise SpecError(f"invalid image reference {ref!r}: empty tag after ':'; {allowed}", key="name")
    tag = tag or "latest"
    host, _, path = name.partition("/")
    if path and ("." in host or ":" in host or host == "localhost"):
        if not re.fullmatch(_DOMAIN_RE, host):
            raise SpecError(
                f"invalid image reference {ref!r}: bad registry host {host!r}; {allowed}", key="name"
            )
    elif ":" in name:
        raise SpecError(f"invalid image reference {ref!r}: more than one ':'; {allowed}", key="name")
    else:
        path = name
    if not re.fullmatch(_IMAGE_NAME_RE, path):
        raise SpecError(f"invalid image reference {ref!r}: bad name {name!r}; {allowed}", key="name")
    # ".." inside a tag is legal for Docker, but names and tags become file
    # names in the store: refusing it outright keeps any ".." out of paths.
    if not re.fullmatch(_TAG_RE, tag) or ".." in tag:
        raise SpecError(f"invalid image reference {ref!r}: bad tag {tag!r}; {allowed}", key="name")
    if len(name) + 1 + len(tag) > _MAX_REF:
        raise SpecError(
            f"invalid image reference {ref[:40]!r}...: longer than {_MAX_REF} characters", key="name"
        )
    return name, tag


def validate_image_ref(ref: str) -> str:
    """Return the normalized ``"name:tag"`` of a Docker-like image reference.

    ``"web"`` becomes ``"web:latest"``. Names are lowercase components
    ``[a-z0-9]+([._-][a-z0-9]+)*`` separated by ``/``; tags are
    ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`` without ``..``; the result is at
    most 128 characters.

    Raises:
        TypeError: if ``ref`` is not a str.
        SpecError: (key ``"name"``) naming the bad value and what is allowed.
    """
    name, tag = split_image_ref(ref)
    return f"{name}:{tag}"


def validate_container_name(name: str) -> str:
    """Return ``name`` if it is a valid container name (Docker's rule), else raise.

    The rule is ``[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}`` (at most 63 characters, so
    it fits a host name), and, stricter than Docker, no ``..`` anywhere:
    container names become directory names.

    Raises:
        TypeError: if ``name`` is not a str.
        SpecError: (key ``"name"``) naming the bad value and what is allowed.
    """
    if not isinstance(name, str):
        raise TypeError(f"container name must be a str, not {type_name(name)}")
    if not re.fullmatch(_CONTAINER_NAME_RE, name) or ".." in name:
        raise SpecError(
            f"invalid container name {name!r}: expected 1 to 63 characters of letters, digits, '_', '.', '-',"
            " starting with a letter or digit, without '..'",
            key="name",
        )
    return name
