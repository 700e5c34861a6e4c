"""OCI images in and out: image layouts, oci-archives and ``docker save`` archives.

Export writes one gzip layer tar per pylxcore layer that has files. Layers are
stored in overlayfs *upper* format, so the conversion is direct: a whiteout
(a 0/0 character device) becomes an empty ``.wh.NAME`` file, an opaque
directory (xattr ``trusted.overlay.opaque=y``) gets a ``.wh..wh..opq`` entry.
The tars are reproducible: entries sorted, every mtime set to one fixed epoch
(``$SOURCE_DATE_EPOCH``, else 0), numeric owners without names, PAX format, and
gzip headers without a name or a time. Exporting the same image twice gives
byte-identical blobs, hence the same digests.

Import reads an OCI image layout (a directory or an oci-archive tar, including
the layout Docker 25+ writes with ``docker save``) or a classic ``docker save``
archive (``manifest.json`` plus layer tars). Every blob is checked against
its digest while it is unpacked into the store's staging area; layers are
committed only once all of them have been verified, so a corrupt archive
leaves nothing behind. An imported layer's key is ``step_key(parent key,
{"oci_diff_id": diff_id})``: importing the same image twice adds nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator

from pylxcore.build.bases import LOCAL_XATTRS, OVERLAY_XATTR_PREFIXES
from pylxcore.build.builder import step_key
from pylxcore.errors import SpecError, StorageError
from pylxcore.runtime.lxcconfig import DEFAULT_PATH
from pylxcore.runtime.rootfs import is_opaque, is_whiteout
from pylxcore.spec import Limits, validate, validate_image_ref
from pylxcore.store import Store, atomic_write, canonical_json, rmtree, sha256_hex

if TYPE_CHECKING:
    from pylxcore.engine import Engine
    from pylxcore.images import BuiltImage

log = logging.getLogger("pylxcore")

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MEDIA_INDEX, DOCKER_MANIFEST_LIST)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_LIMITS = "io.pylxcore.runtime.limits"
ANNOTATION_IMAGE_ID = "io.pylxcore.image.id"

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_MAX_JSON = 16 << 20  # index, manifests and configs are small; refuse absurd ones
_CHUNK = 1 << 20
_MAX_LINK_HOPS = 8
_HEX64 = re.compile(r"[0-9a-f]{64}")

# Kernel machine names -> OCI (GOARCH) names, with the variant where OCI wants one.
_OCI_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def host_platform() -> tuple[str, str | None]:
    """This host's (architecture, variant) in OCI naming, e.g. ("amd64", None)."""
    machine = platform.machine()
    return _OCI_ARCH.get(machine, (machine, None))


def source_epoch() -> int:
    """The fixed time written into exported tars and configs: ``$SOURCE_DATE_EPOCH``, else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# ---------------------------------------------------------------------------
# Tar members from files on disk (shared with lxcimage)
# ---------------------------------------------------------------------------


def _xattr_headers(path: Path) -> dict[str, str]:
    """PAX ``SCHILY.xattr.*`` headers for the xattrs of ``path`` worth shipping.

    Raises StorageError for overlayfs redirect/metacopy xattrs: such a layer
    depends on its lower layers in a way a tar cannot express.
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    headers: dict[str, str] = {}
    for name in sorted(names):
        if name.endswith(("overlay.redirect", "overlay.metacopy")):
            raise StorageError(
                f"{path} uses overlayfs {name.rsplit('.', 1)[-1]}, which a layer tar cannot carry",
                path=str(path),
            )
        if name.startswith(OVERLAY_XATTR_PREFIXES) or name in LOCAL_XATTRS:
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return headers


class TreeTarWriter:
    """Adds files from disk to a tar as reproducible members.

    Owners stay numeric (no user or group names); ``mtime`` (when not None)
    replaces every member's time; regular files with several names in one
    tree become one file plus hard links to it, in the order they are added.
    """

    def __init__(self, tar: tarfile.TarFile, *, mtime: int | None) -> None:
        self.tar = tar
        self.mtime = mtime
        self._links: dict[tuple[int, int], str] = {}

    def _info(self, arcname: str, st: os.stat_result | None, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.mode = mode
        info.uid = st.st_uid if st else 0
        info.gid = st.st_gid if st else 0
        info.uname = info.gname = ""
        if self.mtime is not None or st is None:
            info.mtime = self.mtime or 0
        else:
            info.mtime = int(st.st_mtime)
        return info

    def add_path(self, path: Path, arcname: str, st: os.stat_result | None = None) -> None:
        """Add ``path`` (not followed if a link) as ``arcname``; sockets are skipped.

        Raises OSError from reading the file, StorageError (see _xattr_headers).
        """
        st = st or os.lstat(path)
        info = self._info(arcname, st, stat.S_IMODE(st.st_mode))
        mode = st.st_mode
        if stat.S_ISREG(mode):
            ident = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and ident in self._links:
                info.type = tarfile.LNKTYPE
                info.linkname = self._links[ident]
                self.tar.addfile(info)
                return
            if st.st_nlink > 1:
                self._links[ident] = arcname
            info.type = tarfile.REGTYPE
            info.size = st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # a socket: meaningless in an image
        if not stat.S_ISLNK(mode):
            info.pax_headers = _xattr_headers(path)
        if info.type == tarfile.REGTYPE:
            with open(path, "rb") as fh:
                self.tar.addfile(info, fh)
        else:
            self.tar.addfile(info)

    def add_bytes(self, arcname: str, data: bytes, *, mode: int = 0o644) -> None:
        info = self._info(arcname, None, mode)
        info.type = tarfile.REGTYPE
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def add_dir(self, arcname: str, *, mode: int = 0o755) -> None:
        info = self._info(arcname, None, mode)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)

    def add_empty(self, arcname: str, *, mode: int = 0) -> None:
        """An empty regular file owned by root (whiteout markers)."""
        self.add_bytes(arcname, b"", mode=mode)


def _sorted_names(path: Path) -> list[str]:
    return sorted(os.listdir(path), key=os.fsencode)


def write_layer_tar(fs: Path, tar: tarfile.TarFile, *, mtime: int) -> None:
    """Write the layer tree ``fs`` (overlayfs upper format) as an OCI layer.

    Raises StorageError (a file named ``.wh.*``, overlayfs redirects) and OSError.
    """
    writer = TreeTarWriter(tar, mtime=mtime)

    def walk(directory: Path, prefix: str) -> None:
        entries: list[tuple[str, Path | None, os.stat_result | None]] = []
        if is_opaque(directory) and prefix:
            entries.append((prefix + WHITEOUT_OPAQUE, None, None))
        for name in _sorted_names(directory):
            full = directory / name
            st = os.lstat(full)
            if name.startswith(WHITEOUT_PREFIX):
                raise StorageError(
                    f"{full}: a file named {WHITEOUT_PREFIX}* cannot be carried in an OCI layer",
                    path=str(full),
                )
            if is_whiteout(st):
                entries.append((prefix + WHITEOUT_PREFIX + name, None, None))
            else:
                entries.append((prefix + name, full, st))
        entries.sort(key=lambda e: os.fsencode(e[0]))
        for arcname, entry_path, entry_st in entries:
            if entry_path is None or entry_st is None:
                writer.add_empty(arcname)
                continue
            writer.add_path(entry_path, arcname, entry_st)
            if stat.S_ISDIR(entry_st.st_mode):
                walk(entry_path, arcname + "/")

    walk(fs, "")


# ---------------------------------------------------------------------------
# Hashing streams
# ---------------------------------------------------------------------------


class _HashingWriter:
    """A write-only file object that hashes and counts what passes to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes and counts what it reads from ``source``."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__()
        self.source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def _write_blob(blobs: Path, staging: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + sha256_hex(data)
    target = blobs / digest[7:]
    if not target.exists():
        tmp = staging / (digest[7:] + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return {"digest": digest, "size": len(data)}


def _export_layer(fs: Path, blobs: Path, staging: Path, mtime: int) -> tuple[dict[str, Any], str]:
    """Write one layer blob; return (its descriptor, its diff_id)."""
    tmp = staging / "layer.tmp"
    with open(tmp, "wb") as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                write_layer_tar(fs, tar, mtime=mtime)
        out.flush()
        os.fsync(out.fileno())
    target = blobs / compressed.digest[7:]
    if target.exists():
        tmp.unlink()
    else:
        os.replace(tmp, target)
    descriptor = {"mediaType": MEDIA_LAYER_GZIP, "digest": compressed.digest, "size": compressed.size}
    return descriptor, uncompressed.digest


def _oci_history(store: Store, record: dict[str, Any], created: str) -> list[dict[str, Any]]:
    """One history entry per step; those of layers with files are not ``empty_layer``.

    For an image built on another image, the parent's layers are not in the
    record's history: they get entries of their own, from their layer records.
    """
    layers: list[str] = list(record["layers"])
    out: list[dict[str, Any]] = []
    done = 0

    def entry(instruction: str, empty: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"created": created, "created_by": instruction, "comment": "pylxcore"}
        if empty:
            item["empty_layer"] = True
        return item

    for step in record.get("history", []):
        key = step.get("key")
        if key in layers[done:]:
            index = layers.index(key, done)
            while done < index:
                out.append(entry(store.get_layer(layers[done]).instruction, False))
                done += 1
            out.append(entry(step.get("instruction", ""), False))
            done += 1
        else:
            out.append(entry(step.get("instruction", ""), True))
    while done < len(layers):
        out.append(entry(store.get_layer(layers[done]).instruction, False))
        done += 1
    return out


def oci_config(store: Store, record: dict[str, Any], diff_ids: list[str], epoch: int) -> dict[str, Any]:
    """The OCI image config of an image record (see the OCI image spec, config.md)."""
    cfg = record["config"]
    env = dict(cfg.get("env") or {})
    env_list = [] if "PATH" in env else [f"PATH={DEFAULT_PATH}"]
    env_list += [f"{k}={v}" for k, v in sorted(env.items())]
    container: dict[str, Any] = {"Env": env_list, "WorkingDir": cfg.get("workdir") or "/"}
    if cfg.get("cmd") is not None:
        container["Cmd"] = list(cfg["cmd"])
    user = cfg.get("user") or "root"
    if user != "root":
        container["User"] = user
    if cfg.get("labels"):
        container["Labels"] = dict(cfg["labels"])
    arch, variant = host_platform()
    created = _rfc3339(epoch)
    config: dict[str, Any] = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": _oci_history(store, record, created),
    }
    if variant:
        config["variant"] = variant
    return config


def _ref_name(engine: Engine, ref: str, record: dict[str, Any]) -> str | None:
    """The name:tag to put in the layout: ``ref`` itself if it names the image, else its first tag."""
    refs = engine.store.read_refs()
    with contextlib.suppress(SpecError, TypeError):
        name = validate_image_ref(ref)
        if refs.get(name) == record["id"]:
            return name
    tags = sorted(n for n, i in refs.items() if i == record["id"])
    return tags[0] if tags else None


def _write_layout(engine: Engine, ref: str, layout: Path, staging: Path) -> dict[str, Any]:
    """Write the image's blobs into ``layout`` (an existing directory); return its index entry."""
    store = engine.store
    record = engine.images.record(ref)
    epoch = source_epoch()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer_descs: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for key in record["layers"]:
        fs = store.layer_dir(key) / "fs"
        if not fs.is_dir():
            raise StorageError(f"layer {key} of image {ref!r} is missing from the store", path=str(fs))
        try:
            desc, diff_id = _export_layer(fs, blobs, staging, epoch)
        except OSError as err:
            raise StorageError(f"cannot export layer {key}: {err}", path=str(fs)) from err
        layer_descs.append(desc)
        diff_ids.append(diff_id)
    config = oci_config(store, record, diff_ids, epoch)
    config_desc = {"mediaType": MEDIA_CONFIG, **_write_blob(blobs, staging, canonical_json(config).encode())}
    annotations = {ANNOTATION_IMAGE_ID: record["id"]}
    limits = record["config"].get("limits") or {}
    if limits:
        annotations[ANNOTATION_LIMITS] = canonical_json(limits)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
        "annotations": annotations,
    }
    entry: dict[str, Any] = {
        "mediaType": MEDIA_MANIFEST,
        **_write_blob(blobs, staging, canonical_json(manifest).encode()),
    }
    arch, variant = host_platform()
    entry["platform"] = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    name = _ref_name(engine, ref, record)
    if name:
        entry["annotations"] = {ANNOTATION_REF_NAME: name}
    return entry


_OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def _merge_index(layout: Path, entry: dict[str, Any]) -> None:
    """Write ``index.json`` with ``entry``, replacing an entry of the same ref name."""
    index_path = layout / "index.json"
    manifests: list[dict[str, Any]] = []
    if index_path.exists():
        try:
            manifests = list(json.loads(index_path.read_text()).get("manifests") or [])
        except (OSError, ValueError, AttributeError) as err:
            raise StorageError(
                f"{index_path} is not a readable OCI index: {err}", path=str(index_path)
            ) from err
    name = (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    manifests = [
        m
        for m in manifests
        if m.get("digest") != entry["digest"]
        and (name is None or (m.get("annotations") or {}).get(ANNOTATION_REF_NAME) != name)
    ]
    manifests.append(entry)
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    (layout / "oci-layout").write_text(_OCI_LAYOUT)
    atomic_write(index_path, canonical_json(index))


def _tar_layout(layout: Path, target: Path, epoch: int) -> None:
    """Write the layout directory as a reproducible (sorted, fixed-time) tar at ``target``."""
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        writer = TreeTarWriter(tar, mtime=epoch)
        for name in ("blobs", "blobs/sha256"):
            writer.add_dir(name)
        for blob in sorted(os.listdir(layout / "blobs" / "sha256")):
            writer.add_bytes("blobs/sha256/" + blob, (layout / "blobs" / "sha256" / blob).read_bytes())
        for name in ("index.json", "oci-layout"):
            writer.add_bytes(name, (layout / name).read_bytes())


def export_image(engine: Engine, ref: str, path: Path, *, archive: bool) -> Path:
    """Export image ``ref`` as an OCI image layout at ``path``; return ``path``.

    ``archive=False`` writes a layout directory. ``path`` may be missing, an
    empty directory, or an existing OCI layout (the image is added to it,
    replacing an entry of the same name). ``archive=True`` writes the layout as
    one tar file (an "oci-archive"), replacing a file at ``path``. Either is
    complete or absent: it is assembled beside ``path`` and renamed into place.

    Raises ImageNotFound, StorageError (unwritable target, a layer missing from
    the store, or a layer an OCI tar cannot express).
    """
    path = Path(path).absolute()
    store = engine.store
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise StorageError(f"cannot write to {path.parent}: {err}", path=str(path)) from err
    try:
        # Shared gc lock: prune cannot delete a layer while we read it.
        with store.lock("gc", shared=True):
            if archive:
                if path.is_dir():
                    raise StorageError(f"{path} is a directory; an oci-archive is a file", path=str(path))
                layout = staging / "layout"
                layout.mkdir()
                _merge_index(layout, _write_layout(engine, ref, layout, staging))
                _tar_layout(layout, staging / "archive.tar", source_epoch())
                os.replace(staging / "archive.tar", path)
            elif path.is_dir() and (path / "oci-layout").exists():
                _merge_index(path, _write_layout(engine, ref, path, staging))
            else:
                if path.exists() and (not path.is_dir() or any(path.iterdir())):
                    raise StorageError(
                        f"{path} exists and is not an empty directory or an OCI layout", path=str(path)
                    )
                layout = staging / "layout"
                layout.mkdir(mode=0o755)
                _merge_index(layout, _write_layout(engine, ref, layout, staging))
                if path.exists():
                    path.rmdir()
                os.rename(layout, path)
    except OSError as err:
        raise StorageError(f"cannot export {ref!r} to {path}: {err}", path=str(path)) from err
    finally:
        rmtree(staging)
    return path


# ---------------------------------------------------------------------------
# Import: where the files come from
# ---------------------------------------------------------------------------


def _clean_relpath(name: str, what: str) -> str:
    """``name`` as a relative path without ``.`` parts ("" for the root).

    Raises StorageError for an absolute path or one with ``..``.
    """
    if name.startswith("/"):
        raise StorageError(f"{what} {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StorageError(f"{what} {name!r} points outside (has '..')")
    return "/".join(parts)


class _Source:
    """Files of an image archive, by their path inside it."""

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        """Raises StorageError when missing or not a regular file."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read_json(self, name: str) -> tuple[Any, bytes]:
        """(parsed, raw bytes) of a small JSON file. Raises StorageError."""
        with self.open(name) as fh:
            data = fh.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise StorageError(f"{name} is larger than {_MAX_JSON} bytes", path=name)
        try:
            return json.loads(data), data
        except ValueError as err:
            raise StorageError(f"{name} is not valid JSON: {err}", path=name) from err


class _DirSource(_Source):
    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)

    def _path(self, name: str) -> str:
        rel = _clean_relpath(name, "path")
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise StorageError(f"{name} leads outside {self.root}", path=name)
        return real

    def exists(self, name: str) -> bool:
        try:
            return os.path.isfile(self._path(name))
        except StorageError:
            return False

    def open(self, name: str) -> IO[bytes]:
        path = self._path(name)
        if not os.path.isfile(path):
            raise StorageError(f"the image has no file {name}", path=os.path.join(self.root, name))
        return open(path, "rb")


class _TarSource(_Source):
    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
            members = self.tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise StorageError(f"{path} is not a readable tar archive: {err}", path=str(path)) from err
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            with contextlib.suppress(StorageError):
                self.members[_clean_relpath(m.name, "member")] = m

    def _member(self, name: str) -> tarfile.TarInfo:
        rel = _clean_relpath(name, "path")
        for _ in range(_MAX_LINK_HOPS):
            m = self.members.get(rel)
            if m is None:
                raise StorageError(f"{self.path} has no member {name}", path=str(self.path))
            if m.issym():
                rel = _clean_relpath(
                    posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname)), "link"
                )
            elif m.islnk():
                rel = _clean_relpath(m.linkname, "link")
            elif m.isreg():
                return m
            else:
                raise StorageError(f"{name} in {self.path} is not a file", path=str(self.path))
        raise StorageError(f"too many links resolving {name} in {self.path}", path=str(self.path))

    def exists(self, name: str) -> bool:
        try:
            self._member(name)
        except StorageError:
            return False
        return True

    def open(self, name: str) -> IO[bytes]:
        fh = self.tar.extractfile(self._member(name))
        if fh is None:
            raise StorageError(f"{name} in {self.path} is not a file", path=str(self.path))
        return fh

    def close(self) -> None:
        self.tar.close()


# ---------------------------------------------------------------------------
# Import: reading manifests
# ---------------------------------------------------------------------------


class _LayerBlob:
    """Where one layer is and what it must hash to."""

    def __init__(
        self, name: str, diff_id: str, digest: str | None, size: int | None, media_type: str
    ) -> None:
        self.name = name  # path inside the source
        self.diff_id = diff_id  # sha256 of the uncompressed tar
        self.digest = digest  # sha256 of the blob as stored, when known
        self.size = size
        self.media_type = media_type


class _Manifest:
    """What import needs from any of the formats."""

    def __init__(
        self, config: dict[str, Any], layers: list[_LayerBlob], ref: str | None, limits: str | None
    ) -> None:
        self.config = config
        self.layers = layers
        self.ref = ref
        self.limits = limits


def _digest_name(digest: Any) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:") or not _HEX64.fullmatch(digest[7:]):
        raise StorageError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
    return "blobs/sha256/" + digest[7:]


def _read_blob_json(source: _Source, desc: dict[str, Any]) -> Any:
    """Read and verify the small JSON blob of descriptor ``desc``."""
    name = _digest_name(desc.get("digest"))
    value, raw = source.read_json(name)
    actual = "sha256:" + sha256_hex(raw)
    if actual != desc["digest"]:
        raise StorageError(f"blob {desc['digest']} is corrupt: its content hashes to {actual}", path=name)
    if isinstance(desc.get("size"), int) and desc["size"] != len(raw):
        raise StorageError(
            f"blob {desc['digest']} has {len(raw)} bytes, the descriptor says {desc['size']}", path=name
        )
    return value


def _annotated_name(desc: dict[str, Any]) -> str | None:
    ann = desc.get("annotations") or {}
    name = ann.get(ANNOTATION_CONTAINERD_NAME) or ann.get(ANNOTATION_REF_NAME)
    return name if isinstance(name, str) and name else None


def _same_ref(a: str, b: str) -> bool:
    try:
        return validate_image_ref(a) == validate_image_ref(b)
    except SpecError:
        return a == b


def _pick_descriptor(
    source: _Source, index: dict[str, Any], wanted: str | None
) -> tuple[dict[str, Any], str | None]:
    """The image manifest to import from an index, and the name the index gives it.

    Several images: the one named ``wanted``. Several platforms: this host's.
    Raises StorageError when the choice is not clear.
    """
    ref: str | None = None
    for depth in range(4):
        manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
        if depth == 0 and len(manifests) > 1 and wanted:
            named = [
                m for m in manifests if _annotated_name(m) and _same_ref(_annotated_name(m) or "", wanted)
            ]
            manifests = named or manifests
        if len(manifests) > 1:
            arch, _ = host_platform()
            manifests = [
                m
                for m in manifests
                if (m.get("platform") or {}).get("architecture") in (arch, None)
                and (m.get("platform") or {}).get("os") in ("linux", None)
            ]
        if len(manifests) != 1:
            names = sorted(filter(None, (_annotated_name(m) for m in index.get("manifests") or [])))
            raise StorageError(
                f"the index lists {len(index.get('manifests') or [])} images and none or several fit"
                f" (names: {', '.join(names) or 'none'}); pass name= to pick one"
            )
        desc = manifests[0]
        ref = ref or _annotated_name(desc)
        if desc.get("mediaType") not in INDEX_TYPES:
            return desc, ref
        index = _read_blob_json(source, desc)
    raise StorageError("image indexes are nested too deeply")


def _read_oci(source: _Source, wanted: str | None) -> _Manifest:
    index, _ = source.read_json("index.json")
    if not isinstance(index, dict):
        raise StorageError("index.json is not an OCI image index")
    desc, ref = _pick_descriptor(source, index, wanted)
    manifest = _read_blob_json(source, desc)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise StorageError(f"manifest {desc.get('digest')} is not an image manifest")
    config = _read_blob_json(source, manifest["config"])
    layers = manifest.get("layers") or []
    diff_ids = _diff_ids(config)
    if len(layers) != len(diff_ids):
        raise StorageError(f"the manifest lists {len(layers)} layers, the config {len(diff_ids)} diff_ids")
    blobs = [
        _LayerBlob(
            _digest_name(d.get("digest")), diff_id, d["digest"], d.get("size"), str(d.get("mediaType", ""))
        )
        for d, diff_id in zip(layers, diff_ids)
    ]
    limits = (manifest.get("annotations") or {}).get(ANNOTATION_LIMITS)
    return _Manifest(config, blobs, ref, limits)


def _diff_ids(config: Any) -> list[str]:
    if not isinstance(config, dict):
        raise StorageError("the image config is not a JSON object")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise StorageError("the image config has no rootfs.diff_ids list")
    for d in diff_ids:
        _digest_name(d)
    return list(diff_ids)


def _read_docker(source: _Source, wanted: str | None) -> _Manifest:
    entries, _ = source.read_json("manifest.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise StorageError("manifest.json is not a docker save manifest")
    if len(entries) > 1 and wanted:
        entries = [
            e for e in entries if any(_same_ref(t, wanted) for t in e.get("RepoTags") or [])
        ] or entries
    if len(entries) != 1:
        raise StorageError(f"the archive holds {len(entries)} images; pass name= to pick one")
    entry = entries[0]
    config_name = entry.get("Config")
    if not isinstance(config_name, str):
        raise StorageError("manifest.json names no image config")
    config, raw = source.read_json(config_name)
    hexpart = posixpath.basename(config_name).removesuffix(".json")
    if _HEX64.fullmatch(hexpart) and sha256_hex(raw) != hexpart:
        raise StorageError(
            f"the image config {config_name} is corrupt: it hashes to sha256:{sha256_hex(raw)}"
        )
    diff_ids = _diff_ids(config)
    names = entry.get("Layers") or []
    if len(names) != len(diff_ids) or not all(isinstance(n, str) for n in names):
        raise StorageError(f"manifest.json lists {len(names)} layers, the config {len(diff_ids)} diff_ids")
    blobs = []
    for name, diff_id in zip(names, diff_ids):
        # Docker 25+ names layers by their blob digest: that can be checked too.
        base = posixpath.basename(name)
        digest = f"sha256:{base}" if name.startswith("blobs/sha256/") and _HEX64.fullmatch(base) else None
        blobs.append(_LayerBlob(name, diff_id, digest, None, ""))
    tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
    ref = next((t for t in tags if wanted and _same_ref(t, wanted)), tags[0] if tags else None)
    return _Manifest(config, blobs, ref, None)


def _open_source(path: Path) -> _Source:
    if path.is_dir():
        return _DirSource(path)
    if path.is_file():
        return _TarSource(path)
    raise StorageError(f"{path} does not exist", path=str(path))


# ---------------------------------------------------------------------------
# Import: unpacking one layer into overlayfs upper format
# ---------------------------------------------------------------------------


def _decompressed(raw: _HashingReader, name: str) -> IO[bytes]:
    """The uncompressed bytes of a layer blob: gzip or a plain tar, told by its first bytes.

    Raises StorageError for compressions this import does not read (zstd, xz, bzip2).
    """
    head = raw.read(4) or b""
    stream = _Prefixed(head, raw)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        raise StorageError(f"layer {name} is zstd-compressed, which this import does not read", path=name)
    if head[:3] == b"BZh" or head == b"\xfd7zX":
        raise StorageError(
            f"layer {name} is compressed with bzip2 or xz, which OCI layers do not use", path=name
        )
    return stream  # type: ignore[return-value]


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: _HashingReader) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer)) or b""
        buffer[: len(data)] = data
        return len(data)


def _real_dir(fs: Path, rel: str, member: str) -> Path:
    """``fs/rel`` as a real directory (created 0755 where missing), never through a link.

    Raises StorageError when a component is a symlink or not a directory.
    """
    current = fs
    for comp in [p for p in rel.split("/") if p]:
        current = current / comp
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            os.chmod(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise StorageError(
                f"tar member {member!r} would be written through {current.name!r}, which is {kind}"
            )
    return current


def _remove_existing(target: Path, keep_dir: bool) -> bool:
    """Clear ``target`` for a new member; True if it is a directory that stays."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        rmtree(target)
    else:
        target.unlink()
    return False


def _apply_xattrs(target: Path, member: tarfile.TarInfo) -> None:
    for key, value in sorted(member.pax_headers.items()):
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr.") :]
        if name.startswith(OVERLAY_XATTR_PREFIXES) or name in LOCAL_XATTRS:
            continue
        try:
            os.setxattr(target, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as err:
            log.warning("cannot set xattr %s on %s: %s", name, target, err)


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, fs: Path, dirs: list[tuple[Path, int]]
) -> None:
    """Create one tar member under ``fs`` in overlayfs upper format. Raises StorageError, OSError."""
    rel = _clean_relpath(member.name, "tar member")
    parent_rel, _, base = rel.rpartition("/")
    if not rel:
        if member.isdir():  # the layer's root directory itself
            os.chown(fs, member.uid, member.gid)
            os.chmod(fs, member.mode & 0o7777)
        return
    parent = _real_dir(fs, parent_rel, member.name)
    if base == WHITEOUT_OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return  # other aufs metadata (.wh..wh.plnk, ...): nothing overlayfs needs
    if base.startswith(WHITEOUT_PREFIX):
        hidden = base[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise StorageError(f"tar member {member.name!r} is not a valid whiteout")
        target = parent / hidden
        _remove_existing(target, keep_dir=False)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        return
    target = parent / base
    if member.isdir():
        if not _remove_existing(target, keep_dir=True):
            target.mkdir(mode=0o700)
        os.lchown(target, member.uid, member.gid)
        os.chmod(target, member.mode & 0o7777)
        _apply_xattrs(target, member)
        dirs.append((target, int(member.mtime)))
        return
    _remove_existing(target, keep_dir=False)
    if member.isreg():
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            src = tar.extractfile(member)
            if src is not None:
                shutil.copyfileobj(src, out, _CHUNK)
            os.fchown(out.fileno(), member.uid, member.gid)
            os.fchmod(out.fileno(), member.mode & 0o7777)
    elif member.issym():
        link = member.linkname
        if not link.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(parent_rel or ".", link))
            if resolved == ".." or resolved.startswith("../"):
                raise StorageError(f"symlink {member.name!r} -> {link!r} points outside the image root")
        os.symlink(link, target)
        os.lchown(target, member.uid, member.gid)
    elif member.islnk():
        src_rel = _clean_relpath(member.linkname, "hard link target")
        src_parent_rel, _, src_base = src_rel.rpartition("/")
        if not src_base:
            raise StorageError(f"hard link {member.name!r} points at the image root")
        source = _real_dir(fs, src_parent_rel, member.name) / src_base
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise StorageError(
                f"hard link {member.name!r} -> {member.linkname!r}: no such file in the layer"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise StorageError(f"hard link {member.name!r} points at a directory")
        os.link(source, target, follow_symlinks=False)
        return  # the link shares the inode: owner, mode and times are the source's
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(target, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
        os.lchown(target, member.uid, member.gid)
    elif member.isfifo():
        os.mkfifo(target, member.mode & 0o7777)
        os.lchown(target, member.uid, member.gid)
    else:
        log.debug("skipping tar member %s of type %r", member.name, member.type)
        return
    if not member.issym():
        os.chmod(target, member.mode & 0o7777)  # chown cleared set-id bits
    _apply_xattrs(target, member)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _unpack_layer(source: _Source, blob: _LayerBlob, fs: Path) -> None:
    """Unpack ``blob`` into the empty directory ``fs`` and verify its digests.

    Raises StorageError (corrupt blob, digest mismatch, path tricks).
    """
    dirs: list[tuple[Path, int]] = []
    try:
        with source.open(blob.name) as fh:
            raw = _HashingReader(fh)
            plain = _HashingReader(_decompressed(raw, blob.name))
            with tarfile.open(fileobj=plain, mode="r|") as tar:
                for member in tar:
                    _extract_member(tar, member, fs, dirs)
            plain.drain()
            raw.drain()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise StorageError(f"layer {blob.name} is not a valid layer tar: {err}", path=blob.name) from err
    except OSError as err:
        raise StorageError(f"cannot unpack layer {blob.name}: {err}", path=blob.name) from err
    if blob.digest and raw.digest != blob.digest:
        raise StorageError(
            f"layer blob {blob.digest} is corrupt: its content hashes to {raw.digest}", path=blob.name
        )
    if blob.size is not None and raw.size != blob.size:
        raise StorageError(
            f"layer blob {blob.name} has {raw.size} bytes, the manifest says {blob.size}", path=blob.name
        )
    if plain.digest != blob.diff_id:
        raise StorageError(
            f"layer {blob.name} is corrupt: its tar hashes to {plain.digest}, the config says {blob.diff_id}",
            path=blob.name,
        )
    for directory, mtime in reversed(dirs):
        os.utime(directory, (mtime, mtime), follow_symlinks=False)


# ---------------------------------------------------------------------------
# Import: the image record
# ---------------------------------------------------------------------------


def _record_config(config: dict[str, Any], limits_json: str | None) -> dict[str, Any]:
    """pylxcore's image config from an OCI one (Entrypoint + Cmd become cmd).

    An archive is foreign input: every field goes through the same
    validators as a spec's (pylxcore.spec.validate). Raises SpecError naming the
    field (``config.Env[2]``, ``config.WorkingDir``, …).
    """
    c = config.get("config") or {}
    if not isinstance(c, dict):
        raise SpecError(f"expected a mapping, got {type(c).__name__}", key="config")
    env: dict[str, str] = {}
    items = c.get("Env") or []
    if not isinstance(items, list):
        raise SpecError(f"expected a list of KEY=VALUE strings, got {type(items).__name__}", key="config.Env")
    for i, item in enumerate(items):
        if not isinstance(item, str) or "=" not in item:
            raise SpecError(f"expected a KEY=VALUE string, got {item!r}", key=f"config.Env[{i}]")
        key, _, value = item.partition("=")
        env[validate.env_name(key, f"config.Env[{i}]")] = validate.env_value(key, value, "config.Env")
    if env.get("PATH") == DEFAULT_PATH:
        del env["PATH"]
    entrypoint = validate.command(c.get("Entrypoint") or None, "config.Entrypoint") or ()
    cmd_part = validate.command(c.get("Cmd") or None, "config.Cmd") or ()
    cmd = [*entrypoint, *cmd_part] or None
    limits: dict[str, object] = {}
    if limits_json:
        try:
            limits = Limits.from_dict(json.loads(limits_json)).to_dict()
        except (ValueError, SpecError) as err:
            raise StorageError(f"the image's {ANNOTATION_LIMITS} annotation is invalid: {err}") from err
    ignored = sorted(k for k in ("ExposedPorts", "Volumes", "Healthcheck", "StopSignal", "Shell") if c.get(k))
    if ignored:
        log.info(
            "import: the image config's %s have no pylxcore equivalent and are ignored", ", ".join(ignored)
        )
    return {
        "env": env,
        "workdir": validate.workdir(c.get("WorkingDir") or "/", "config.WorkingDir"),
        "user": validate.user(c.get("User") or "root", "config.User"),
        "cmd": cmd,
        "labels": validate.labels(c.get("Labels") or {}, "config.Labels"),
        "limits": limits,
    }


def _record_history(config: dict[str, Any], keys: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(the record's history, one instruction per layer) from the OCI history."""
    history = [h for h in config.get("history") or [] if isinstance(h, dict)]
    if sum(1 for h in history if not h.get("empty_layer")) != len(keys):
        history = [{"created_by": f"layer {k}"} for k in keys]  # missing or inconsistent: one per layer
    out: list[dict[str, Any]] = []
    instructions: list[str] = []
    done = 0
    for n, h in enumerate(history):
        instruction = str(h.get("created_by") or h.get("comment") or "")
        if h.get("empty_layer"):
            parent = keys[done - 1] if done else None
            out.append(
                {
                    "instruction": instruction,
                    "key": step_key(parent, {"oci_history": n, "created_by": instruction}),
                }
            )
        else:
            out.append({"instruction": instruction, "key": keys[done]})
            instructions.append(instruction or f"layer {done}")
            done += 1
    return out, instructions


def _read_manifest(source: _Source, path: Path, wanted: str | None) -> _Manifest:
    """The image in ``source``, whatever its format. Raises StorageError."""
    try:
        if source.exists("index.json"):
            return _read_oci(source, wanted)
        if source.exists("manifest.json"):
            return _read_docker(source, wanted)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
        raise StorageError(f"cannot read {path}: {err}", path=str(path)) from err
    raise StorageError(f"{path} is neither an OCI image layout nor a docker save archive", path=str(path))


def _tag_for(manifest: _Manifest, wanted: str | None) -> str | None:
    """``wanted``, else the archive's own name for the image, normalized. Raises SpecError."""
    if wanted is not None or not manifest.ref:
        return wanted
    ref = manifest.ref.split("@", 1)[0]
    try:
        return validate_image_ref(ref)
    except SpecError as err:
        raise SpecError(
            f"the archive names the image {ref!r}, which is not valid here ({err.reason}); pass name=",
            key="name",
        ) from err


def _import_layers(
    store: Store, source: _Source, manifest: _Manifest, keys: list[str], instructions: list[str]
) -> None:
    """Unpack and verify every layer the store lacks, then commit them. Raises StorageError.

    The caller holds ``lock("gc", shared=True)``. Nothing is committed unless
    every layer checked out; the staging area goes either way.
    """
    staging = store.staging_dir("import")
    try:
        staged: list[tuple[int, Path]] = []
        for i, (key, blob) in enumerate(zip(keys, manifest.layers)):
            if store.has_layer(key):
                continue
            fs = staging / str(i) / "fs"
            fs.mkdir(parents=True)
            os.chmod(fs, 0o755)
            _unpack_layer(source, blob, fs)
            staged.append((i, fs))
        for i, fs in staged:
            store.commit_layer(keys[i], fs, parent=keys[i - 1] if i else None, instruction=instructions[i])
    except OSError as err:
        raise StorageError(f"cannot import a layer into {store.root}: {err}", path=str(staging)) from err
    finally:
        rmtree(staging)


def import_image(engine: Engine, path: Path, *, name: str | None) -> BuiltImage:
    """Import the image at ``path`` and tag it; return it.

    ``path`` is an OCI image layout directory, an oci-archive tar, or a
    ``docker save`` archive (or its unpacked directory). ``name`` tags the
    image (and picks it when the archive holds several); without it, the name
    the archive gives the image is used (the index's ``io.containerd.image.name``
    or ``org.opencontainers.image.ref.name`` annotation, or docker's
    ``RepoTags``); with neither, the image stays untagged (``prune`` removes it).

    Raises SpecError (``name``, or the archive's own name, is not a valid
    image reference: pass ``name=``), StorageError (unreadable, unsupported or
    corrupt input, a layer tar with paths leading outside; nothing of the
    image is left in the store).
    """
    path = Path(path)
    store = engine.store
    wanted = validate_image_ref(name) if name is not None else None
    source = _open_source(path)
    try:
        manifest = _read_manifest(source, path, wanted)
        tag = _tag_for(manifest, wanted)
        arch, _ = host_platform()
        if manifest.config.get("architecture") not in (None, arch):
            log.warning(
                "image %s is for %s, this host is %s", path, manifest.config.get("architecture"), arch
            )
        if not manifest.layers:
            raise StorageError(f"the image in {path} has no layers", path=str(path))
        keys: list[str] = []
        for blob in manifest.layers:
            keys.append(step_key(keys[-1] if keys else None, {"oci_diff_id": blob.diff_id}))
        history, instructions = _record_history(manifest.config, keys)
        config = _record_config(manifest.config, manifest.limits)
        image_id = "sha256:" + sha256_hex(canonical_json({"layers": keys, "config": config}))
        record = {
            "id": image_id,
            "layers": keys,
            "chain": keys[-1],
            "config": config,
            "history": history,
            "base": "import",
            "created": time.time(),
        }
        # Shared gc lock: prune cannot take layers this image stands on before its record exists.
        with store.lock("gc", shared=True):
            _import_layers(store, source, manifest, keys, instructions)
            store.put_image(image_id, record)
            with store.lock("refs"):
                refs = store.read_refs()
                if tag:
                    refs[tag] = image_id
                    store.write_refs(refs)
    finally:
        source.close()
    return engine.images._from_record(record, refs)


def iter_layer_paths(engine: Engine, ref: str) -> Iterator[Path]:
    """The trees of image ``ref``'s layers, bottom first. Raises ImageNotFound, StorageError."""
    record = engine.images.record(ref)
    for key in record["layers"]:
        fs = engine.store.layer_dir(key) / "fs"
        if not fs.is_dir():
            raise StorageError(f"layer {key} of image {ref!r} is missing from the store", path=str(fs))
        yield fs


__all__ = ["export_image", "import_image", "oci_config", "write_layer_tar", "TreeTarWriter", "host_platform"]
