"""The documents of the store, typed: one class per kind of file, and the only
code that knows each file's layout.

    layers/<hex>/meta.json       LayerRecord
    images/<hex>.json            ImageRecord
    refs.json                    Refs
    containers/<name>/meta.json  ContainerRecord

(A container's state.json is its supervisor's to write, with the standard
library only: pylxcore.supervisor.state has its layout, and
pylxcore.runtime.state its typed reader, StateRecord; the store imports
neither the runtime nor the supervisor.)

Each class has ``to_json()`` (the document as written) and ``from_json(data,
path)`` (the document as read). Every document carries ``schema``, the
version of its layout. A reader takes its own version and the one before it
(the files of older roots, written before documents had a schema: no
``schema`` field), and refuses a newer one with a StorageError naming the
file: a document it would misread is worse than one it cannot read.

The build records of the command line (cache/build-records) are
pylxcore.build.record's: they stay standard-library only for a fast replay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from pylxcore.errors import SpecError, StorageError
from pylxcore.spec.limits import Limits
from pylxcore.spec.mount import Mount

# The schema each document is written with. 0 is the layout of the files
# written before documents had one (they have no ``schema`` field).
LAYER_SCHEMA = 1
IMAGE_SCHEMA = 1
REFS_SCHEMA = 1
# 2: a container's record carries its key (see ContainerRecord), written as
# 2 only when the key is not the name, which a reader of 1 would misread.
CONTAINER_SCHEMA = 2


def load(path: Path) -> Any:
    """The JSON in ``path``. Raises FileNotFoundError or NotADirectoryError
    (no such file: the caller knows what that means), StorageError
    (unreadable or not JSON)."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except (OSError, ValueError) as err:
        raise StorageError(f"{path} is unreadable: {err}", path=str(path)) from err


def schema_of(data: Any, current: int, path: Path | str) -> int:
    """The schema of the document ``data`` read from ``path``: 0 when it has
    none (an older root's), else its ``schema``. Raises StorageError when it
    is not a JSON object, or when its schema is not one this pylxcore reads
    (newer than ``current``: a newer pylxcore wrote it)."""
    if not isinstance(data, dict):
        raise StorageError(f"{path} is not a JSON object", path=str(path))
    schema = data.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        raise StorageError(f"{path} has an invalid schema {schema!r}", path=str(path))
    if schema > current:
        raise StorageError(
            f"{path} has schema {schema}, newer than this pylxcore reads ({current}):"
            " a newer pylxcore wrote it; upgrade pylxcore to use this store",
            path=str(path),
        )
    return schema


def bad_record(path: Path | str, err: Exception) -> StorageError:
    """The error of a document with a missing or malformed field."""
    what = f"field {err.args[0]!r} is missing" if isinstance(err, KeyError) else str(err)
    return StorageError(f"{path} is not a valid record: {what}", path=str(path))


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"expected a mapping of strings, got {value!r}")
    return dict(value)


# -- layers ---------------------------------------------------------------------


@attrs.frozen
class LayerOrigin:
    """Where an imported (or pulled) layer came from: its OCI identity, kept so
    that exporting or pushing it again gives the same digests.

    ``diff_id`` is the digest of its uncompressed tar; ``digest``,
    ``media_type`` and ``size`` describe the blob as it came (the blob itself
    is kept beside the layer's tree: ``LayerRecord.blob``).
    """

    diff_id: str
    digest: str
    media_type: str
    size: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerOrigin:
        """Raises KeyError, TypeError, ValueError for a malformed origin."""
        return cls(str(data["diff_id"]), str(data["digest"]), str(data["media_type"]), int(data["size"]))


@attrs.frozen
class LayerRecord:
    """A committed layer as the store knows it (``layers/<hex>/meta.json``;
    ``path``, ``short`` and ``blob`` are where its tree, short link and
    kept blob are)."""

    key: str  # "sha256:<hex>": the cache key, which is also the layer's address
    parent: str | None
    instruction: str
    size: int
    created: float
    path: Path  # the layer's tree
    short: str  # short link name under l/
    origin: LayerOrigin | None = None  # an imported layer's OCI identity
    blob: Path | None = None  # its blob as it came (layers/<hex>/blob), when kept

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": LAYER_SCHEMA,
            "key": self.key,
            "parent": self.parent,
            "instruction": self.instruction,
            "size": self.size,
            "created": self.created,
            "short": self.short,
        }
        if self.origin is not None:
            data["origin"] = attrs.asdict(self.origin)
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path, *, key: str) -> LayerRecord:
        """The record ``data`` read from ``path`` (``layers/<hex>/meta.json``)
        of layer ``key``. Raises StorageError."""
        schema_of(data, LAYER_SCHEMA, path)
        d = path.parent
        try:
            origin = LayerOrigin.from_dict(data["origin"]) if data.get("origin") else None
            return cls(
                key=key,
                parent=data.get("parent"),
                instruction=str(data.get("instruction", "")),
                size=int(data.get("size", 0)),
                created=float(data.get("created", 0.0)),
                path=d / "fs",
                short=str(data["short"]),
                origin=origin,
                blob=d / "blob" if origin is not None and (d / "blob").is_file() else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise bad_record(path, err) from err


# -- images -----------------------------------------------------------------------


@attrs.frozen
class HistoryStep:
    """One step of an image's build: its instruction and its key (a layer's
    address for steps with files, else the metadata step's own key); for an
    imported image, ``oci`` is the foreign history entry, which an export
    writes back as it was (see pylxcore.transfer.imageconfig)."""

    instruction: str
    key: str
    oci: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"instruction": self.instruction, "key": self.key}
        if self.oci is not None:
            data["oci"] = dict(self.oci)
        return data

    @classmethod
    def from_json(cls, data: Any) -> HistoryStep:
        """Raises AttributeError, TypeError for a malformed step."""
        oci = data.get("oci")
        instruction, key = str(data.get("instruction", "")), str(data.get("key", ""))
        return cls(instruction, key, None if oci is None else dict(oci))


@attrs.frozen
class ImageRecord:
    """An image in the store (``images/<hex>.json``): its layers, bottom
    first, the key of its last step (``chain``: what an image built on it
    continues from), its runtime config, its steps, what it was built from
    (a base, or "import") and when; for an imported image, ``origin`` is
    what an export writes back of the foreign config (created, author).

    ``config`` is the document pylxcore.images.ImageConfig reads and writes
    (``ImageConfig.from_record``): its fields are that class's to list, so
    this record carries whatever it holds. The image's id is the hash of
    its layers and this config (see pylxcore.build.builder)."""

    id: str
    layers: tuple[str, ...]
    chain: str
    config: dict[str, Any]
    history: tuple[HistoryStep, ...]
    base: str
    created: float
    origin: dict[str, str] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {
            "schema": IMAGE_SCHEMA,
            "id": self.id,
            "layers": list(self.layers),
            "chain": self.chain,
            "config": dict(self.config),
            "history": [h.to_json() for h in self.history],
            "base": self.base,
            "created": self.created,
        }
        if self.origin:
            data["origin"] = dict(self.origin)
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path) -> ImageRecord:
        """The record ``data`` read from ``path``. Raises StorageError."""
        schema_of(data, IMAGE_SCHEMA, path)
        try:
            layers = _strings(data["layers"])
            config = data["config"]
            if not isinstance(config, dict):
                raise ValueError(f"config is not a mapping: {config!r}")
            return cls(
                id=str(data["id"]),
                layers=layers,
                chain=str(data.get("chain") or (layers[-1] if layers else "")),
                config=config,
                history=tuple(HistoryStep.from_json(h) for h in data.get("history") or []),
                base=str(data.get("base", "")),
                created=float(data.get("created", 0.0)),
                origin=_string_map(data.get("origin") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise bad_record(path, err) from err


# -- refs ------------------------------------------------------------------------------


@attrs.frozen
class Refs:
    """``refs.json``: which image each ``name:tag`` names.

    On disk one JSON object: ``schema`` and the names, each to its image id.
    A name always holds a ":" (pylxcore.spec.validate_image_ref), so none is
    ever ``schema``; and a reader that wants one name (a build record's
    replay, pylxcore.build.record) looks it up as in the older layout, which
    had the names alone."""

    names: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"schema": REFS_SCHEMA, **dict(sorted(self.names.items()))}

    @classmethod
    def from_json(cls, data: Any, path: Path) -> Refs:
        """The refs ``data`` read from ``path``. Raises StorageError."""
        schema_of(data, REFS_SCHEMA, path)
        names = {k: v for k, v in data.items() if k != "schema"}
        bad = [k for k, v in names.items() if not isinstance(v, str) or ":" not in k]
        if bad:
            raise StorageError(f"{path} is not a valid record: bad entries {sorted(bad)}", path=str(path))
        return cls(names)


# -- containers ---------------------------------------------------------------------


@attrs.frozen
class ContainerRecord:
    """``containers/<key>/meta.json``: what a container was created with.

    ``key`` is fixed at creation: its directory, its liblxc name, its
    cgroups, its lock and its place in the network records. ``name`` is
    what users see and look it up by; ``rename`` changes it (see
    pylxcore.runtime.names). A record with no key (written before renames
    kept the directory) has its name for a key.

    ``log_max_size`` and ``log_max_files`` are None for a container created
    before logs rotated (it has no cap of its own: see
    pylxcore.runtime.provision for the default). ``healthcheck`` is the
    check its supervisor runs, in the form pylxcore.runtime.provision gives
    it (Docker's defaults filled in). ``extra`` holds the fields that a
    feature keeps in the record as its own document (a container's place on
    its networks: networks, ports, hostname; see pylxcore.network.attachment),
    read and written back untouched."""

    id: str
    name: str
    image: str  # the reference it was created from
    image_id: str
    layers: tuple[str, ...]  # the image's, bottom first
    command: tuple[str, ...]  # the main process's argv
    env: dict[str, str]
    workdir: str
    user: str
    uid: int
    gid: int
    network: str
    limits: Limits
    mounts: tuple[Mount, ...]
    labels: dict[str, str]
    userns: bool
    created: float
    log_max_size: int | None = None
    log_max_files: int | None = None
    restart: str = "no"  # its restart policy, as pylxcore.spec.validate.restart_policy spells it
    healthcheck: dict[str, Any] | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    key: str = attrs.field(default=attrs.Factory(lambda self: self.name, takes_self=True))

    @property
    def attachable(self) -> bool:
        """Whether it was created with a terminal or its stdin open (``tty``,
        ``stdin``): its supervisor then holds an attach socket
        (pylxcore.supervisor.attachsock)."""
        return bool(self.extra.get("tty") or self.extra.get("open_stdin"))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **self.extra,
            # (schema 1 while the key is the name: an older pylxcore reads it right)
            "schema": CONTAINER_SCHEMA if self.key != self.name else 1,
            "id": self.id,
            "name": self.name,
            "key": self.key,
            "image": self.image,
            "image_id": self.image_id,
            "layers": list(self.layers),
            "command": list(self.command),
            "env": dict(self.env),
            "workdir": self.workdir,
            "user": self.user,
            "uid": self.uid,
            "gid": self.gid,
            "network": self.network,
            "limits": self.limits.to_dict(),
            # (a bind mount's record as before volumes: no "volume" key)
            "mounts": [attrs.asdict(m, filter=lambda a, v: a.name != "volume" or v is not None)
                       for m in self.mounts],
            "labels": dict(self.labels),
            "userns": self.userns,
            "created": self.created,
            "restart": self.restart,
            "healthcheck": self.healthcheck,
        }
        if self.log_max_size is not None:
            data["log_max_size"] = self.log_max_size
        if self.log_max_files is not None:
            data["log_max_files"] = self.log_max_files
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path) -> ContainerRecord:
        """The record ``data`` read from ``path``. Raises StorageError."""
        schema_of(data, CONTAINER_SCHEMA, path)
        try:
            size, files = data.get("log_max_size"), data.get("log_max_files")
            return cls(
                id=str(data["id"]),
                name=str(data["name"]),
                image=str(data["image"]),
                image_id=str(data["image_id"]),
                layers=_strings(data.get("layers", [])),
                command=_strings(data["command"]),
                env=_string_map(data.get("env") or {}),
                workdir=str(data.get("workdir") or "/"),
                user=str(data.get("user") or "root"),
                uid=int(data.get("uid", 0)),
                gid=int(data.get("gid", 0)),
                network=str(data.get("network", "none")),
                limits=Limits.from_dict(data.get("limits") or {}),
                mounts=tuple(Mount(**m) for m in data.get("mounts") or []),
                labels=_string_map(data.get("labels") or {}),
                userns=bool(data.get("userns", False)),
                created=float(data.get("created", 0.0)),
                log_max_size=None if size is None else int(size),
                log_max_files=None if files is None else int(files),
                restart=str(data.get("restart") or "no"),
                healthcheck=dict(data["healthcheck"]) if data.get("healthcheck") else None,
                extra={k: v for k, v in data.items() if k not in _CONTAINER_FIELDS},
                key=str(data.get("key") or data["name"]),
            )
        except (KeyError, TypeError, ValueError, SpecError) as err:
            raise bad_record(path, err) from err

    @classmethod
    def read(cls, path: Path) -> ContainerRecord:
        """The record at ``path``. Raises FileNotFoundError, NotADirectoryError
        (no such container), StorageError."""
        return cls.from_json(load(path), path)


# The keys of a container's record that ContainerRecord types (the rest is its ``extra``).
_CONTAINER_FIELDS = frozenset(f.name for f in attrs.fields(ContainerRecord)) - {"extra"} | {"schema"}


__all__ = [
    "ContainerRecord",
    "HistoryStep",
    "ImageRecord",
    "LayerOrigin",
    "LayerRecord",
    "Refs",
    "bad_record",
    "load",
    "schema_of",
]
