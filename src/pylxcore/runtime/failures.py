"""Why liblxc could not start a container, told as the typed error that names the cause."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

from pylxcore.errors import LimitError, LXCError, StorageError
from pylxcore.spec import parse_size
from pylxcore.spec.sizes import human_size

# Below this memory limit (Docker's floor for --memory), a container liblxc
# could not start is told it needs more memory.
MIN_START_MEMORY = 6 << 20


def lxc_reason(line: str) -> str:
    """The message of one lxc.log line, without what comes before it
    ("lxc-execute NAME TIME ERROR    overlay - ../src/lxc/…/overlay.c:ovl_mount:490 - ")."""
    parts = line.split(" - ", 2)
    return parts[2] if len(parts) == 3 else line


def filesystem_type(path: Path) -> str:
    """The type of the filesystem that holds ``path`` ("overlay", "ext4", …;
    "" when unknown), from the deepest mount point above it."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo") as fh:
            lines = fh.readlines()
    except OSError:
        return ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or not rfields:
            continue
        # The kernel writes these four in a mount point as octal escapes.
        point = fields[4]
        for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
            point = point.replace(escaped, char)
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, rfields[0]
    return fstype


def raise_start_failure(
    name: str, limits: Mapping[str, Any], lines: Sequence[str], *, root: Path, containers_dir: Path
) -> NoReturn:
    """Raise the error for container ``name``, which liblxc could not start
    (``lines``: liblxc's ERROR lines, the cause first; ``limits``: the
    container's; ``root`` and ``containers_dir``: its store's). Raises
    StorageError or LimitError when the store's filesystem or a limit is to
    blame, else LXCError; liblxc's reason is in the message, and its lines in
    the LXCError (``detail``) that it comes from."""
    reason = lxc_reason(lines[0]) if lines else "no reason given"
    cause = LXCError(
        f"liblxc could not start container {name!r}: {reason}",
        operation="start",
        container=name,
        detail="\n".join(lines),
    )
    if filesystem_type(containers_dir) == "overlay":
        raise StorageError(
            f"cannot start container {name!r}: the store root {root} is on overlayfs, which"
            " cannot hold a container's root (an overlay itself); the store root must not be on"
            f" overlayfs: put it on ext4, xfs, btrfs or tmpfs (liblxc: {reason})",
            path=str(root),
        ) from cause
    memory = limits.get("memory")
    if memory is not None and parse_size(memory) < MIN_START_MEMORY:
        size = parse_size(memory)
        raise LimitError(
            f"cannot start container {name!r}: memory limit {human_size(size, binary=True)} is too small"
            f" to start a container; give at least a few MB (liblxc: {reason})",
            limit="memory",
            value=size,
        ) from cause
    raise cause
