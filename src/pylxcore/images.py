"""Built images: the ``BuiltImage`` value and ``engine.images``."""

from __future__ import annotations

import builtins
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, overload

import attrs

from pylxcore.errors import Conflict, ImageNotFound, SpecError
from pylxcore.notebook import ImageList
from pylxcore.spec import Healthcheck, Image, Limits, validate_image_ref
from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.build.builder import StepResult
    from pylxcore.build.progress import Progress
    from pylxcore.engine import Engine
    from pylxcore.store.records import ImageRecord
    from pylxcore.transfer.progress import TransferProgress


@attrs.frozen
class ImageConfig:
    """What a container of the image runs with, unless told otherwise.

    A container runs ``entrypoint + cmd`` (arguments given to ``run`` replace
    ``cmd``), as in Docker. ``exposed_ports``, ``volumes``, ``stop_signal``
    and ``healthcheck`` are kept as the image gave them.
    """

    env: dict[str, str]
    workdir: str
    user: str
    cmd: tuple[str, ...] | None
    labels: dict[str, str]
    limits: Limits
    entrypoint: tuple[str, ...] | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str | None = None
    healthcheck: Healthcheck | None = None
    onbuild: tuple[str, ...] = ()  # Docker's OnBuild: run by a Dockerfile built FROM the image

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ImageConfig:
        cmd = data.get("cmd")
        entrypoint = data.get("entrypoint")
        healthcheck = data.get("healthcheck")
        return cls(
            env=dict(data.get("env") or {}),
            workdir=data.get("workdir") or "/",
            user=data.get("user") or "root",
            cmd=tuple(cmd) if cmd is not None else None,
            labels=dict(data.get("labels") or {}),
            limits=Limits.from_dict(data.get("limits") or {}),
            entrypoint=tuple(entrypoint) if entrypoint is not None else None,
            exposed_ports=tuple(data.get("exposed_ports") or ()),
            volumes=tuple(data.get("volumes") or ()),
            stop_signal=data.get("stop_signal"),
            healthcheck=Healthcheck.from_dict(healthcheck) if healthcheck else None,
            onbuild=tuple(data.get("onbuild") or ()),
        )


@attrs.frozen
class BuiltImage:
    """An image in the store: its id, tags, layers and runtime config.

    ``layers`` has one entry per step (the base first); ``layer_keys`` lists
    only the layers with files, bottom first: what a container's root stacks.
    """

    id: str
    tags: tuple[str, ...]
    layers: tuple[StepResult, ...]
    layer_keys: tuple[str, ...]
    config: ImageConfig
    created: float

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]

    @property
    def name(self) -> str:
        """The first tag, or the short id of an untagged image."""
        return self.tags[0] if self.tags else self.short_id

    @property
    def size(self) -> int:
        return sum(step.size for step in self.layers)

    def __repr__(self) -> str:
        size = human_size(self.size)
        return f"<BuiltImage {self.name} id={self.short_id} layers={len(self.layer_keys)} size={size}>"

    def _repr_html_(self) -> str:
        import html  # (deferred: only Jupyter needs it)

        rows = "".join(
            "<tr>"
            f"<td>{s.index}</td><td><code>{html.escape(s.instruction[:80])}</code></td>"
            f"<td><code>{s.digest.split(':')[-1][:12]}</code></td><td>{human_size(s.size)}</td>"
            f"<td>{'cached' if s.cached else 'built'}</td><td>{s.seconds:.2f}s</td>"
            "</tr>"
            for s in self.layers
        )
        cmd = html.escape(" ".join(self.config.cmd)) if self.config.cmd else "-"
        return (
            f"<table><caption><b>{html.escape(self.name)}</b> <code>{self.short_id}</code> "
            f"{human_size(self.size)}, cmd: <code>{cmd}</code></caption>"
            "<tr><th>#</th><th>step</th><th>digest</th><th>size</th><th>cache</th><th>time</th></tr>"
            f"{rows}</table>"
        )


class ImageCollection:
    """``engine.images``: build, find, tag and remove images."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store

    def build(
        self,
        image: Image,
        *,
        context: str | os.PathLike[str] | None = None,
        no_cache: bool = False,
        progress: Progress = None,
    ) -> BuiltImage:
        """Build ``image`` (from cache where possible) and tag it with ``image.name``.

        ``context`` is the folder ``copy`` sources are relative to (default: the
        image's own context, from ``Image.load``, else the current folder).
        ``progress=True`` prints each step; a callable receives ``BuildEvent``s.

        Raises BuildError (a step failed: nothing of it is left behind),
        SpecError (a copy source outside the context), ImageNotFound (an
        ``image:`` base that is not built, a ``docker://`` base the registry
        lacks), RegistryError (pulling a ``docker://`` base), StorageError.
        A ``docker://REF`` base is pulled once (see ``pull``); later builds
        use the store's copy.
        """
        if not isinstance(image, Image):
            raise TypeError(f"build() takes an Image, not {type(image).__name__}")
        if image.base.startswith("docker://"):
            from pylxcore.transfer.registry.api import base_image

            # Built on the store's copy, pulled now if missing (the builder knows
            # no registries: build/ imports nothing of transfer/).
            image = attrs.evolve(image, base="image:" + base_image(self._engine, image.base))
        # The builder loads here: finding, running and listing images need none of it.
        from pylxcore.build.builder import Builder
        from pylxcore.build.progress import BuildEvent, emitter

        started = time.monotonic()
        # Shared: many builds at once; prune takes it exclusively, so it can
        # never delete a layer that a build in progress stands on.
        with self._store.lock("gc", shared=True):
            image_id, record, results = Builder(self._store).build(
                image, context=context, no_cache=no_cache, progress=progress
            )
            # An unchanged image keeps its record (and its creation time): a
            # cached rebuild writes nothing.
            existing = self._store.get_image_record(image_id)
            if existing is None:
                self._store.put_image(record)
            else:
                record = existing
            with self._store.lock("refs"):
                refs = self._store.read_refs()
                if refs.get(image.name) != image_id:
                    refs[image.name] = image_id
                    self._store.write_refs(refs)
        emitter(progress)(
            BuildEvent(
                "done", len(results), len(results), seconds=time.monotonic() - started, image_id=image_id
            )
        )
        return self._from_record(record, refs, results)

    def _from_record(
        self, record: ImageRecord, refs: dict[str, str], results: list[StepResult] | None = None
    ) -> BuiltImage:
        image_id = record.id
        if results is None:
            from pylxcore.build.builder import StepResult  # (the value lives with the builder)

            sizes = {}
            for key in record.layers:
                try:
                    sizes[key] = self._store.get_layer(key).size
                except Exception:  # noqa: BLE001  (a listing shows what it can)
                    sizes[key] = 0
            results = [
                StepResult(i, h.instruction, h.key, sizes.get(h.key, 0), True, 0.0, h.key in sizes)
                for i, h in enumerate(record.history)
            ]
        return BuiltImage(
            id=image_id,
            tags=tuple(sorted(name for name, iid in refs.items() if iid == image_id)),
            layers=tuple(results),
            layer_keys=record.layers,
            config=ImageConfig.from_record(record.config),
            created=record.created,
        )

    def _resolve(self, ref: str) -> tuple[str, dict[str, str]]:
        """(image id, refs) for a name[:tag], a full id, or an unambiguous id prefix."""
        if not isinstance(ref, str):
            raise TypeError(f"an image reference is a str, not {type(ref).__name__}")
        refs = self._store.read_refs()
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            matches = [i for i in self._store.image_ids() if i[7:].startswith(hexpart)]
            if len(matches) == 1:
                return matches[0], refs
            if len(matches) > 1:
                raise Conflict(f"image id prefix {ref!r} is ambiguous", name=ref)
            if ref.startswith("sha256:"):
                raise ImageNotFound(f"no image with id {ref}", name=ref)
        try:
            name = validate_image_ref(ref)
        except SpecError as err:
            raise ImageNotFound(f"no image {ref!r}: {err.reason}", name=ref) from err
        image_id = refs.get(name)
        if image_id is None:
            raise ImageNotFound(f"no image {name!r} in {self._store.root}", name=name)
        return image_id, refs

    def record(self, ref: str) -> ImageRecord:
        """The store's record of image ``ref``. Raises ImageNotFound, StorageError."""
        image_id, _ = self._resolve(ref)
        record = self._store.get_image_record(image_id)
        if record is None:
            raise ImageNotFound(f"image {ref!r} ({image_id}) has no record", name=ref)
        return record

    def get(self, ref: str) -> BuiltImage:
        """The image named ``ref`` ("web:1.0", "web", an id or id prefix). Raises ImageNotFound."""
        image_id, refs = self._resolve(ref)
        record = self._store.get_image_record(image_id)
        if record is None:
            raise ImageNotFound(f"image {ref!r} ({image_id}) has no record", name=ref)
        return self._from_record(record, refs)

    def exists(self, ref: str) -> bool:
        try:
            self._resolve(ref)
        except ImageNotFound:
            return False
        return True

    def list(self) -> ImageList:
        """All images in the store, newest first. A list, shown as a table in Jupyter."""
        refs = self._store.read_refs()
        out = []
        for image_id in self._store.image_ids():
            record = self._store.get_image_record(image_id)
            if record is not None:
                out.append(self._from_record(record, refs))
        return ImageList(sorted(out, key=lambda im: -im.created))

    def tag(self, ref: str, new: str) -> BuiltImage:
        """Give image ``ref`` the extra name ``new``. Raises ImageNotFound, SpecError."""
        name = validate_image_ref(new)
        with self._store.lock("refs"):
            image_id, refs = self._resolve(ref)
            refs[name] = image_id
            self._store.write_refs(refs)
        return self.get(name)

    def remove(self, ref: str, *, force: bool = False) -> builtins.list[str]:
        """Untag ``ref``; when no tag is left and no container uses it, delete the
        image and the layers no one else uses. Returns what was removed.

        Raises ImageNotFound, or Conflict when a container uses the image
        (``force=True`` untags it anyway; its layers stay until the container goes).
        """
        removed: list[str] = []
        with self._store.lock("gc"):
            with self._store.lock("refs"):
                image_id, refs = self._resolve(ref)
                users = self._engine.containers._users_of(image_id)
                names = [n for n, i in refs.items() if i == image_id]
                by_name = ref in refs or (":" not in ref and f"{ref}:latest" in refs)
                to_untag = [validate_image_ref(ref)] if by_name else names
                last = len(set(names) - set(to_untag)) == 0
                if users and last and not force:
                    raise Conflict(
                        f"image {ref!r} is used by container(s) {', '.join(sorted(users))}; "
                        "remove them first or use force=True",
                        name=ref,
                    )
                for n in to_untag:
                    refs.pop(n, None)
                    removed.append(f"untagged {n}")
                self._store.write_refs(refs)
            if last and not users:
                self._store.remove_image_record(image_id)
                removed.append(f"deleted {image_id}")
                removed += [f"deleted layer {k}" for k in self._engine._gc_layers()]
        return removed

    # -- interop (the formats live in pylxcore.transfer) ----------------------------

    @overload
    def export(self, ref: str, path: str | os.PathLike[str], *, format: str = ...) -> Path: ...

    @overload
    def export(self, ref: str, path: BinaryIO, *, format: str = ...) -> None: ...

    def export(
        self, ref: str, path: str | os.PathLike[str] | BinaryIO, *, format: str = "oci"  # noqa: A002
    ) -> Path | None:
        """Write image ``ref`` to ``path`` as ``format``: "oci" (an OCI image
        layout directory), "oci-archive" (the same as a tar), "docker-archive"
        (what ``docker save`` writes; Docker 20.10's ``docker load`` reads it),
        "lxc" (LXC's meta.tar.xz + rootfs.tar.xz pair in a directory), "incus"
        (Incus's unified tarball) or "rootfs" (one flattened root filesystem tar).
        Returns the path written. A layer imported from elsewhere goes out as
        the blob it came as: the same digests.

        ``path`` may be a binary stream instead (a pipe, stdout) for
        "oci-archive" and "docker-archive": the archive streams to it, and
        None is returned.

        Raises ImageNotFound, SpecError (unknown format, or a stream for a
        format that is a directory), StorageError.
        """
        archives = ("oci-archive", "docker-archive")
        if not isinstance(path, (str, os.PathLike)):
            if format not in archives:
                raise SpecError(f"only {' and '.join(archives)} can be written to a stream", key="format")
            from pylxcore.transfer import oci_export

            oci_export.export_stream(self._engine, ref, path, format=format)
            return None
        if format in ("oci", *archives):
            from pylxcore.transfer import oci_export

            return oci_export.export_image(self._engine, ref, Path(path), format=format)
        if format in ("lxc", "incus", "rootfs"):
            from pylxcore.transfer import lxcimage

            return lxcimage.export_image(self._engine, ref, Path(path), format=format)
        raise SpecError(
            f"unknown export format {format!r}: use oci, oci-archive, docker-archive, lxc, incus or rootfs",
            key="format",
        )

    def import_(self, path: str | os.PathLike[str] | BinaryIO, *, name: str | None = None) -> BuiltImage:
        """Import an OCI image layout, an oci-archive or a ``docker save`` archive.

        Layers are checked against their digests; ``.wh.`` files become overlayfs
        whiteouts; each layer keeps the blob it came as, so exporting it again
        gives the same digests. The image config is kept whole (entrypoint,
        ports, volumes, stop signal, healthcheck, history). ``name`` tags the
        result (default: the archive's own ref name). ``path`` may be a binary
        stream of an archive (stdin).
        Raises StorageError (corrupt or unsupported input; nothing half-imported
        stays), SpecError (bad name).
        """
        from pylxcore.transfer import oci_import

        if not isinstance(path, (str, os.PathLike)):
            return oci_import.import_stream(self._engine, path, name=name)[0]
        return oci_import.import_image(self._engine, Path(path), name=name)

    # -- registries (pylxcore.transfer.registry) ---------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platform: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        progress: TransferProgress = None,
    ) -> BuiltImage:
        """Pull ``ref`` from its registry (``busybox`` is docker.io/library/busybox:latest,
        ``localhost:5000/team/web:1.0``, ``…@sha256:…``) and tag it in the store
        (``busybox:latest``; a digest pin as ``NAME:sha256-<hex>``).

        An index resolves to this host's platform unless ``platform=`` ("linux/arm64")
        says otherwise. Only the layers the store lacks are downloaded, each checked
        against its digest as it streams. Credentials come from docker's config.json
        or containers' auth.json (see ``Engine.login``); TLS is verified (``ca_file=``
        adds a CA; ``/etc/docker/certs.d/HOST/`` and ``/etc/containers/certs.d/HOST/``
        are read); plain HTTP only for loopback registries or ``insecure=True``.
        ``progress=True`` shows each layer's bytes and speed as it moves (a bar on
        stderr, a widget in Jupyter); a callable receives ``TransferEvent``s.

        Raises ImageNotFound (no such repository, tag or digest), RegistryError
        (authentication, TLS, transport, digest mismatch: the registry's reason),
        StorageError, SpecError (a bad reference or platform). A failed pull leaves
        nothing in the store.
        """
        from pylxcore.transfer.registry import api

        return api.pull_image(
            self._engine, ref, platform=platform, ca_file=ca_file, insecure=insecure, progress=progress
        )

    def push(
        self,
        image: str | BuiltImage,
        dest: str | None = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        progress: TransferProgress = None,
    ) -> str:
        """Push store image ``image`` to ``dest`` (default: its own name, e.g.
        ``localhost:5000/team/web:1.0``); return the pushed manifest's digest.

        Only the blobs the registry lacks are uploaded (mounted from another
        repository of the same registry where it offers that). A layer pulled
        from a registry goes back as the blob it came as: same digests.
        Credentials, TLS and ``progress`` as ``pull``.

        Raises ImageNotFound (no such local image), RegistryError, StorageError,
        SpecError (a bad destination).
        """
        from pylxcore.transfer.registry import api

        ref = image.id if isinstance(image, BuiltImage) else image
        if dest is None and isinstance(image, BuiltImage):
            dest = image.name
        return api.push_image(self._engine, ref, dest, ca_file=ca_file, insecure=insecure, progress=progress)
