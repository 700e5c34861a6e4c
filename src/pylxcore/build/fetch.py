"""``ADD URL``: fetching the file a Dockerfile's ADD names by URL, as Docker does.

The file is fetched by the builder (not inside a container), on every build:
its bytes decide the step's cache key, so a build that fetches the same bytes
reuses the layer. As Docker writes it, the file is not unpacked even when it
is an archive, its mode is 0600 (unless ``--chmod``) and its time is the
server's ``Last-Modified``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pylxcore.errors import BuildError, StorageError
from pylxcore.store import rmtree

if TYPE_CHECKING:
    from pylxcore.spec import Layer
    from pylxcore.store import Store

__all__ = ["fetch_staged", "fetch_url"]

# A server that stops sending for this long has failed the fetch.
_TIMEOUT = 60.0


def fetch_url(url: str, folder: Path, name: str) -> None:
    """Write what ``url`` (http or https) serves to ``folder/name``, mode 0600,
    modified at the server's Last-Modified time when it gives one.

    Raises:
        BuildError: when the server cannot be reached, answers with an error
            status, or the transfer breaks off.
        StorageError: when the disk under ``folder`` is full.
    """
    import email.utils  # (deferred: only ADD of a URL needs these)
    import http.client
    import urllib.error
    import urllib.request

    target = folder / name
    request = urllib.request.Request(url, headers={"User-Agent": "pylxcore"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as resp:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            got = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    got += len(chunk)
            # read(n) ends quietly at a closed connection: the length tells a broken transfer.
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and got != int(length):
                raise BuildError(f"fetching {url} failed: the transfer broke off at byte {got} of {length}")
            last_modified = resp.headers.get("Last-Modified")
    except urllib.error.HTTPError as err:
        raise BuildError(f"fetching {url} failed: the server answered {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise BuildError(f"cannot fetch {url}: {err.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as err:  # a reset, a timeout, a full disk...
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(f"the store's disk is full: {url} does not fit", path=str(folder)) from err
        raise BuildError(f"fetching {url} failed: {err!r}") from None
    if last_modified:
        try:
            when = email.utils.parsedate_to_datetime(last_modified).timestamp()
        except (TypeError, ValueError):
            return  # a header that is no date: the file keeps the time it was written
        os.utime(target, (when, when))


def fetch_staged(store: Store, layer: Layer, *, step: int, instruction: str) -> Path:
    """Fetch ``layer.url`` as ``layer.src`` into a new staging folder of
    ``store``, returned (the caller removes it).

    Raises:
        BuildError: naming the step and instruction, when the fetch fails.
        StorageError: when the store's disk is full.
    """
    folder = store.staging_dir("fetch")
    try:
        fetch_url(layer.url, folder, layer.src)
    except BuildError as err:
        rmtree(folder)
        raise BuildError(err.reason, step=step, instruction=instruction) from None
    except BaseException:
        rmtree(folder)
        raise
    return folder
