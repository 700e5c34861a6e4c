"""The build context: where a copy source really is, and that it stays inside the context.

The one place that follows a copy source's symlinks: the spec checks sources
with it when an image is given a context, and the builder resolves them with
it when it hashes and copies them.
"""

from __future__ import annotations

import os
import pathlib

from pylxcore.errors import SpecError
from pylxcore.spec.validate import relative_path

__all__ = ["resolve_copy_source"]


def resolve_copy_source(context: str | os.PathLike[str], src: str, *, key: str = "copy.src") -> pathlib.Path:
    """Return the real path of ``src`` inside the build ``context``.

    ``src`` must be relative, contain no ``..`` component, and, after every
    symlink is resolved, still lie inside the real path of ``context`` and
    exist. A trailing ``/`` ("site/") is allowed and then ``src`` must be a
    directory. This checks only ``src`` itself: symlinks *inside* a copied
    directory are the copier's business (it must copy them as links).

    Raises:
        SpecError: (with ``key``) naming ``src`` when it is absolute, uses
            ``..``, escapes the context through a symlink, or does not exist;
            (with key ``"context"``) when ``context`` is not a directory.
    """
    relative_path(src, key)
    root = os.path.realpath(os.fspath(context))
    if not os.path.isdir(root):
        raise SpecError(f"build context {os.fspath(context)!r} is not a directory", key="context")
    real = os.path.realpath(os.path.join(root, src))
    if os.path.commonpath([root, real]) != root:
        raise SpecError(f"{src!r} resolves to {real!r}, outside the build context {root!r}", key=key)
    if not os.path.exists(real):
        raise SpecError(f"{src!r} does not exist in the build context {root!r}", key=key)
    if src.endswith("/") and not os.path.isdir(real):
        raise SpecError(f"{src!r} ends with '/' but is not a directory", key=key)
    return pathlib.Path(real)
