"""The store on disk: layers by key, image records, locks, atomic commits.

Layout under the engine root::

    layers/<hex>/fs        a committed layer's tree (overlayfs upper format: whiteouts stay)
    layers/<hex>/meta.json what made it: parent, instruction, size, created (and an
                           imported layer's origin: diff_id, blob digest, media type)
    layers/<hex>/blob      an imported layer's blob as it came, for exports that give it back
    l/<short>              short symlinks to layers/<hex>/fs, so that an overlay
                           mount's option string (one 4 KiB page) fits many lowerdirs
    images/<hex>.json      image records (the config of a built image)
    refs.json              name:tag -> image id
    containers/<name>/     each container's lxcpath entry (see pylxcore.runtime.provision)
    tmp/                   staging for anything that is not committed yet
    locks/                 flock files
    bin/                   the compiled supervisor and its zygote's socket
    cache/                 shortcuts of the command line (build records)

Each JSON document here (and a container's meta.json) is read and written by
its typed record in pylxcore.store.records, which carries the version of its
layout (``schema``); a container's state.json is its supervisor's to write
(see pylxcore.runtime.state).

Every commit is a rename from tmp/ into place, so a reader sees either the old
state or the new one. Locks are flock(2): the kernel drops them when the
holder dies, so a killed process never leaves a lock that blocks forever.

Nobody but root may enter the store (SPEC.md section 7): configs hold env
secrets, and a container's root can plant a setuid-root binary in its own
writable layer, which any host user could run if they could reach it. So the
root and every dir at its top are 0700 (``PRIVATE_DIR``) whatever the
caller's umask, and the records the store writes are 0600 (``PRIVATE_FILE``)
as a second wall. The trees of layers keep the modes their image gave them:
the walls are the dirs above them. ``Engine.check()`` tightens older roots.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from pylxcore.errors import StorageError
from pylxcore.procs import owner_alive as owner_alive
from pylxcore.procs import owner_tag as owner_tag
from pylxcore.store.records import ImageRecord, LayerOrigin, LayerRecord, Refs, load

SHORT_ID_LEN = 12
PRIVATE_DIR = 0o700  # the store's dirs: root's alone (see the module's doc)
PRIVATE_FILE = 0o600  # the records it writes
# The dirs at the top of every root (Engine.check() tightens whatever else is there too).
TOP_DIRS = ("layers", "l", "images", "containers", "tmp", "locks", "cache")


def sha256_hex(data: bytes | str) -> str:
    import hashlib  # (deferred: 4 ms of every import pylxcore)

    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always hashes the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def strip_digest(digest: str) -> str:
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def dir_size(path: Path) -> int:
    """Bytes used by a tree, counting each hardlinked inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            total += st.st_blocks * 512
    return total


def rmtree(path: Path) -> None:
    """Remove a tree that may hold read-only dirs or device nodes (whiteouts)."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return

    def onerror(func: Any, p: str, exc: Any) -> None:
        # A dir made read-only by a build script: make it writable and retry once.
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except FileNotFoundError:
            pass

    import shutil  # (deferred: 3 ms of every import pylxcore)

    shutil.rmtree(path, onerror=onerror)


def _still_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the one at ``path`` (raises
    FileNotFoundError when nothing is): a lock file may be deleted by its holder."""
    return os.fstat(fd).st_ino == os.stat(path).st_ino


def disk_full(path: Path) -> bool:
    """Whether the filesystem holding ``path`` has (next to) no room left."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 256 * 1024 or (st.f_files > 0 and st.f_favail == 0)


def atomic_write(path: Path, data: str) -> None:
    """Write a file so that readers see the old or the new content, never half.
    Raises StorageError (e.g. a full disk); the old content is then intact."""
    try:
        _atomic_write(path, data)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror or err}", path=str(path)) from err


def _atomic_write(path: Path, data: str) -> None:
    import tempfile  # (deferred: 2 ms of every import pylxcore)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{owner_tag()}-")
    # mkstemp makes the file 0600 whatever the umask, and os.replace gives the
    # path that file: a record is root's alone from its first byte.
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_private_dir(path: Path) -> None:
    """Create dir ``path`` 0700 unless it exists (then it is left as it is).
    mkdir's mode is masked by the umask, so it can only come out tighter than
    asked, never looser: chmod then makes it exactly 0700."""
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
        return
    os.chmod(path, PRIVATE_DIR)


def _make_parents(path: Path) -> None:
    """Create the missing dirs above a new store root, 0755 at most: under a
    umask of 0 they would be world-writable, and whoever may write a root's
    parent may swap the root for one of their own."""
    missing = []
    parent = path.parent
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o755)


def read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


class Store:
    """The files under one engine root. Not thread-safe on its own; see locks."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.layers_dir = self.root / "layers"
        self.links_dir = self.root / "l"
        self.images_dir = self.root / "images"
        self.containers_dir = self.root / "containers"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.refs_path = self.root / "refs.json"
        try:
            _make_parents(self.root)
            make_private_dir(self.root)
            for name in TOP_DIRS:
                make_private_dir(self.root / name)
        except OSError as err:
            raise StorageError(
                f"cannot create the store at {self.root}: {err.strerror}", path=str(self.root)
            ) from err

    @functools.cached_property
    def root_id(self) -> str:
        """A short, stable id of this root: it keeps cgroup and container-visible
        names of two engines with different roots apart. (Worked out on first
        use: hashlib loads OpenSSL, ~3 ms, and most commands touch no cgroup.)"""
        return sha256_hex(str(self.root))[:8]

    # -- locks ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, *, shared: bool = False) -> Iterator[None]:
        """Hold the flock ``locks/<name>.lock`` (released when the holder dies)."""
        path = self.locks_dir / f"{name}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                # Its holder may have deleted the file (drop_lock) while we
                # waited: a lock on a deleted file locks nothing, so retry.
                if _still_at(fd, path):
                    break
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lock_if_free(self, name: str) -> Iterator[bool]:
        """Hold the flock ``locks/<name>.lock`` if nobody does, without
        waiting; yields whether it is held (for whoever must not wait on a
        holder that may wait on it). When held, the file goes at the end."""
        path = self.locks_dir / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # A file its holder deleted (drop_lock) locks nothing: not held.
                got = _still_at(fd, path)
            except BlockingIOError:
                got = False
            yield got
            if got:
                self.drop_lock(name)
        finally:
            os.close(fd)

    def drop_lock(self, name: str) -> None:
        """Delete the file of lock ``name``; only its holder may (see lock())."""
        with contextlib.suppress(FileNotFoundError):
            (self.locks_dir / f"{name}.lock").unlink()

    def drop_unused_locks(self, prefix: str, in_use: Callable[[str], bool]) -> None:
        """Delete the lock files ``<prefix><x>`` whose ``x`` is no longer in use
        and that nobody holds (each taken, without waiting, before it goes)."""
        for path in self.locks_dir.glob(f"{prefix}*.lock"):
            name = path.name[: -len(".lock")]
            if in_use(name[len(prefix) :]):
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _still_at(fd, path) and not in_use(name[len(prefix) :]):
                    path.unlink()
            except (BlockingIOError, FileNotFoundError):
                pass
            finally:
                os.close(fd)

    # -- staging -------------------------------------------------------------

    def staging_dir(self, prefix: str) -> Path:
        """A fresh private dir under tmp/; the caller commits it or removes it.
        mkdtemp makes it 0700 whatever the umask: a layer committed from it
        (layers/<hex>/) keeps that mode."""
        import tempfile  # (deferred: 2 ms of every import pylxcore)

        return Path(tempfile.mkdtemp(prefix=f"{prefix}-{owner_tag()}-", dir=self.tmp_dir))

    # -- layers --------------------------------------------------------------

    def layer_dir(self, key: str) -> Path:
        return self.layers_dir / strip_digest(key)

    def has_layer(self, key: str) -> bool:
        return (self.layer_dir(key) / "meta.json").exists()

    def get_layer(self, key: str) -> LayerRecord:
        """The record of layer ``key``. Raises StorageError (not in the store, unreadable)."""
        path = self.layer_dir(key) / "meta.json"
        try:
            data = load(path)
        except FileNotFoundError as err:
            raise StorageError(f"layer {key} is not in the store", path=str(path.parent)) from err
        return LayerRecord.from_json(data, path, key=key)

    def commit_layer(
        self,
        key: str,
        staged_fs: Path,
        *,
        parent: str | None,
        instruction: str,
        origin: LayerOrigin | None = None,
        staged_blob: Path | None = None,
    ) -> LayerRecord:
        """Move a staged tree into the store as layer ``key``.

        ``origin`` records an imported layer's OCI identity, and
        ``staged_blob`` (a file) its blob as it came; both move in with the tree.
        If another process committed the same key first, ours is discarded and
        theirs is returned: the key names the content, so either will do.
        """
        hexkey = strip_digest(key)
        short = hexkey[:SHORT_ID_LEN]
        final = self.layer_dir(key)
        pending = self.staging_dir("commit")
        try:
            os.rename(staged_fs, pending / "fs")
            if staged_blob is not None:
                os.chmod(staged_blob, PRIVATE_FILE)
                os.rename(staged_blob, pending / "blob")
            record = LayerRecord(
                key=key,
                parent=parent,
                instruction=instruction,
                size=dir_size(pending / "fs"),
                created=time.time(),
                path=final / "fs",
                short=short,
                origin=origin,
            )
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(pending / "meta.json", flags, PRIVATE_FILE)
            with os.fdopen(fd, "w") as fh:
                json.dump(record.to_json(), fh)
            link = self.links_dir / short
            if not os.path.lexists(link):
                tmp_link = self.links_dir / f".{short}-{owner_tag()}"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_link)
                os.symlink(f"../layers/{hexkey}/fs", tmp_link)
                os.replace(tmp_link, link)
            try:
                os.rename(pending, final)
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        except OSError as err:
            rmtree(pending)
            raise StorageError(f"cannot commit layer {key}: {err}", path=str(final)) from err
        rmtree(pending)  # only left when someone else won the race
        return self.get_layer(key)

    def layer_keys(self) -> list[str]:
        return [f"sha256:{p.name}" for p in self.layers_dir.iterdir() if (p / "meta.json").exists()]

    def remove_layer(self, key: str) -> None:
        """Delete a layer: rename out of the way first so readers never see half."""
        d = self.layer_dir(key)
        if not d.exists():
            return
        doomed = self.staging_dir("rm-layer")
        os.rename(d, doomed / "x")
        link = self.links_dir / strip_digest(key)[:SHORT_ID_LEN]
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        rmtree(doomed)

    def short_path(self, key: str) -> str:
        """The short path of a layer's tree, for overlay lowerdir lists."""
        return str(self.links_dir / strip_digest(key)[:SHORT_ID_LEN])

    # -- images --------------------------------------------------------------

    def image_path(self, image_id: str) -> Path:
        return self.images_dir / f"{strip_digest(image_id)}.json"

    def put_image(self, record: ImageRecord) -> None:
        """Write ``record`` (replacing any of the same id). Raises StorageError."""
        atomic_write(self.image_path(record.id), canonical_json(record.to_json()))

    def get_image_record(self, image_id: str) -> ImageRecord | None:
        """The record of image ``image_id``, None when there is none. Raises
        StorageError (unreadable, or a newer schema)."""
        path = self.image_path(image_id)
        try:
            return ImageRecord.from_json(load(path), path)
        except FileNotFoundError:
            return None

    def image_ids(self) -> list[str]:
        return [f"sha256:{p.stem}" for p in self.images_dir.glob("*.json")]

    def remove_image_record(self, image_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.image_path(image_id).unlink()

    # -- refs ----------------------------------------------------------------

    def read_refs(self) -> dict[str, str]:
        """Which image each ``name:tag`` names (see records.Refs). Raises StorageError."""
        try:
            return Refs.from_json(load(self.refs_path), self.refs_path).names
        except FileNotFoundError:
            return {}

    def write_refs(self, refs: dict[str, str]) -> None:
        """Callers hold ``lock("refs")`` around read-modify-write. Raises StorageError."""
        atomic_write(self.refs_path, json.dumps(Refs(dict(refs)).to_json(), indent=1))
