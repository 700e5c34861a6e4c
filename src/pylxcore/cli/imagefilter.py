"""``images --filter``: docker's dangling, label, reference, before and since filters."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Sequence

from pylxcore.cli.output import key_values
from pylxcore.errors import SpecError

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage, ImageCollection

FILTERS = ("dangling", "label", "reference", "before", "since")


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` options by key. Raises SpecError (an unknown key, a bad value)."""
    out = key_values(items, FILTERS, "images")
    for value in out.get("dangling", ()):
        if value.lower() not in ("true", "false", "1", "0"):
            raise SpecError(f"invalid filter 'dangling={value}': true or false", key="--filter")
    return out


def _reference_matches(tag: str, pattern: str) -> bool:
    """docker's rule: the pattern against NAME:TAG, or against NAME when it has no tag."""
    name = tag.rpartition(":")[0]
    return fnmatch.fnmatchcase(tag, pattern) or (":" not in pattern and fnmatch.fnmatchcase(name, pattern))


def select(
    images: list[BuiltImage], items: Sequence[str], collection: ImageCollection
) -> list[tuple[BuiltImage, tuple[str, ...]]]:
    """Each image the filters keep, with the tags to show (a reference
    filter shows only the tags it matches)."""
    filters = parse_filters(items)
    out: list[tuple[BuiltImage, tuple[str, ...]]] = []
    created: dict[str, float] = {}
    for key in ("before", "since"):
        for ref in filters.get(key, ()):
            created[key] = collection.get(ref).created  # (raises ImageNotFound, as docker)
    for image in images:
        tags = image.tags
        keep: list[Any] = []
        for value in filters.get("dangling", ()):
            keep.append((not tags) == (value.lower() in ("true", "1")))
        if "label" in filters:
            labels = image.config.labels
            keep.append(all(_label(labels, v) for v in filters["label"]))
        if "reference" in filters:
            tags = tuple(t for t in tags if any(_reference_matches(t, p) for p in filters["reference"]))
            keep.append(bool(tags))
        if "before" in created:
            keep.append(image.created < created["before"])
        if "since" in created:
            keep.append(image.created > created["since"])
        if all(keep):
            out.append((image, tags))
    return out


def _label(labels: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)
