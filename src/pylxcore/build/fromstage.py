"""``COPY --from``: the files of another image (a Dockerfile stage) as a copy's source.

The other image is built first (from cache when it can be). Its chain key
names its content exactly, so the copy's cache key is made from that key and
the source path, without reading a byte; only a copy that runs writes the
source's merged files (whiteouts and opaque directories applied, symlinks
kept as links) into a private folder, which the ordinary copy then reads as
its context.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from pylxcore.runtime.rootfs import LayerStack, merged_entries

__all__ = ["materialize_source"]


def materialize_source(layers: list[Path], src: str, dest: Path) -> str:
    """Write ``src`` (a path in the image whose layer folders are ``layers``,
    bottom first) into the empty folder ``dest``; return its path there,
    relative to ``dest`` ("." for the whole root).

    Symlinks on the way to ``src`` and ``src`` itself resolve inside the image,
    as Docker follows them. Raises FileNotFoundError when the image has no ``src``.
    """
    stack = LayerStack(list(reversed(layers)))
    resolved = stack.resolve("/" + src, follow_last=True).strip("/")
    if resolved and stack.lookup(resolved) is None:
        raise FileNotFoundError(f"/{src} does not exist in the image it is copied from")
    top = stack.lookup(resolved) if resolved else None
    if top is not None and not top.is_dir():
        # A file keeps the name it was asked by (a link's target's bytes under the link's name).
        target = dest / src
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(top, target, follow_symlinks=False)
        return src
    prefix = resolved + "/" if resolved else ""
    (dest / resolved).mkdir(parents=True, exist_ok=True)
    for rel, real, st in merged_entries(layers):
        if not rel.startswith(prefix):
            continue
        target = dest / rel
        if stat.S_ISDIR(st.st_mode):
            target.mkdir()
            os.chmod(target, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(real), target)
        elif stat.S_ISREG(st.st_mode):
            shutil.copy2(real, target, follow_symlinks=False)
    return resolved or "."
