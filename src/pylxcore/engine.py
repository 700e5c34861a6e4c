"""The engine: one store root, its images and containers. No daemon: the files
under the root are the whole state, and any number of processes may share it."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from pylxcore.errors import ContainerNotFound, InvalidState, LXCError
from pylxcore.runtime.containers import ContainerCollection
from pylxcore.runtime.launch import close_zygote
from pylxcore.runtime.liblxc import available
from pylxcore.store import Store

if TYPE_CHECKING:
    from typing import Iterator, Mapping, Sequence

    from pylxcore.images import ImageCollection
    from pylxcore.network.collection import NetworkCollection
    from pylxcore.runtime.check import CheckReport
    from pylxcore.runtime.events import Event
    from pylxcore.volumes import VolumeCollection

DEFAULT_ROOT = "/var/lib/pylxcore"


@attrs.frozen
class PruneReport:
    """What ``Engine.prune()`` removed."""

    containers: tuple[str, ...]
    images: tuple[str, ...]
    layers: tuple[str, ...]
    bytes_freed: int


class Engine:
    """Entry point: ``Engine(root=...)``; the root defaults to ``$PYLXCORE_ROOT``,
    else /var/lib/pylxcore. Engines with different roots never see each other.
    ``userns=True`` makes user-namespaced containers the default (see create()).

    Raises LXCError when not run as root (pylxcore needs root), StorageError
    when the root cannot be created.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, userns: bool = False) -> None:
        # Said before the store is touched: a non-root caller would only meet
        # "Permission denied" at its root (0700, root's alone), or make a store
        # of its own that no container could run from. (available() is asked
        # only then: for root it would import lxc, which Engine() defers.)
        why = available() if os.geteuid() != 0 else None
        if why is not None:
            raise LXCError(why, operation="engine")
        if root is None:
            root = os.environ.get("PYLXCORE_ROOT") or DEFAULT_ROOT
        if not isinstance(userns, bool):
            raise TypeError(f"userns must be True or False, not {userns!r}")
        # The default for containers created without a userns= of their own.
        self.userns = userns
        self.store = Store(root)
        self.containers = ContainerCollection(self)

    @functools.cached_property
    def images(self) -> ImageCollection:
        """This root's images. Made on first use: the commands on containers
        need nothing of pylxcore.images."""
        from pylxcore.images import ImageCollection

        return ImageCollection(self)

    @functools.cached_property
    def volumes(self) -> VolumeCollection:
        """This root's named volumes (made on first use, like ``images``)."""
        from pylxcore.volumes import VolumeCollection

        return VolumeCollection(self)

    @functools.cached_property
    def networks(self) -> NetworkCollection:
        """This root's bridge networks (made on first use, like ``images``)."""
        from pylxcore.network.collection import NetworkCollection

        return NetworkCollection(self)

    @property
    def root(self) -> Path:
        return self.store.root

    def __repr__(self) -> str:
        return f"<Engine root={str(self.root)!r}>"

    def _repr_html_(self) -> str:
        """In Jupyter: the root, then its containers and images as tables."""
        import html

        containers = self.containers.list(all=True)
        images = self.images.list()
        return (f"<p><b>Engine</b> <code>{html.escape(str(self.root))}</code></p>"
                f"{containers._repr_html_()}{images._repr_html_()}")

    def close(self) -> None:
        """Stop the helpers of this root, if they run: the one that forks its
        container supervisors and the one that attaches execs (each exits by
        itself after a few idle seconds; the latter once its execs have
        ended). Containers and their supervisors run on; the engine stays
        usable. Raises nothing."""
        from pylxcore.runtime.attach_client import close_attacher  # (deferred: socket, json)

        close_zygote(self.store.containers_dir)
        close_attacher(str(self.store.containers_dir))

    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        follow: bool = False,
    ) -> Iterator[Event]:
        """What happened to this root's containers (create, start, die, oom,
        kill, stop, restart, health_status, destroy, exec_start), oldest
        first: from ``since`` to ``until`` (unix times; None: from the first,
        to now); with ``follow``, then as they happen, until ``until`` (None:
        until the caller stops iterating). ``filters``: ``container`` (name
        or id), ``event`` (action), ``image``, ``type``, each a string or a
        list of them. Raises SpecError for a bad filter."""
        from pylxcore.runtime.events import read_events

        return read_events(self.store, since=since, until=until, filters=filters, follow=follow)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _referenced_layers(self) -> set[str]:
        keys: set[str] = set()
        for image_id in self.store.image_ids():
            record = self.store.get_image_record(image_id)
            if record:
                keys.update(record.layers)
        keys.update(self.containers._layers_in_use())
        return keys

    def _gc_layers(self) -> list[str]:
        """Delete layers no image and no container uses. Caller holds lock("gc")."""
        used = self._referenced_layers()
        removed = []
        for key in self.store.layer_keys():
            if key not in used:
                self.store.remove_layer(key)
                removed.append(key)
        return removed

    def login(
        self,
        registry: str,
        username: str,
        password: str,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
    ) -> Path:
        """Check ``username``/``password`` against ``registry`` (host[:port]; Docker
        Hub is "docker.io") and keep them in docker's config.json
        (``$DOCKER_CONFIG`` or ``~/.docker/config.json``), where pulls and pushes,
        and docker, find them. Returns that file's path. Raises RegistryError
        (refused credentials, TLS, transport), SpecError, StorageError."""
        from pylxcore.transfer.registry import api

        return api.login(registry, username, password, ca_file=ca_file, insecure=insecure)

    def logout(self, registry: str) -> bool:
        """Forget the credentials docker's config.json keeps for ``registry``;
        whether there were any. Raises SpecError, StorageError."""
        from pylxcore.transfer.registry import api

        return api.logout(registry)

    def check(self, *, repair: bool = True) -> CheckReport:
        """Check the store and (by default) repair what a killed process left
        half-done: staging dirs and temp files of dead processes, orphaned build
        containers, containers whose supervisor died, leftover cgroups, the addresses, rules,
        links and DNS names of networked containers that are gone; and
        it closes a root an older pylxcore left open to other host users. Work
        of live processes is left alone. Returns what was repaired and what is
        still wrong (``report.consistent``). Raises StorageError."""
        from pylxcore.runtime.check import check  # (only a check needs it, not every Engine())

        return check(self, repair=repair)

    def prune(self) -> PruneReport:
        """Remove stopped containers, untagged images no container uses, and
        layers nothing references. Returns what was freed. Raises StorageError."""
        from pylxcore.build.record import RECORDS
        from pylxcore.store import dir_size, rmtree

        containers = []
        for c in self.containers.list(all=True):
            try:
                if c.status() in ("exited", "created"):
                    c.remove()
                    containers.append(c.name)
            except (InvalidState, ContainerNotFound):
                continue  # started or removed by another process meanwhile: not ours to prune
        # The lock files of containers that are gone (those that removed
        # themselves when they exited).
        self.store.drop_unused_locks("ctr-", lambda name: (self.store.containers_dir / name).exists())
        images = []
        freed = 0
        with self.store.lock("gc"):
            with self.store.lock("refs"):
                tagged = set(self.store.read_refs().values())
            in_use = self.containers._images_in_use()
            for image_id in self.store.image_ids():
                if image_id not in tagged and image_id not in in_use:
                    self.store.remove_image_record(image_id)
                    images.append(image_id)
            used = self._referenced_layers()
            layers = []
            for key in self.store.layer_keys():
                if key not in used:
                    freed += dir_size(self.store.layer_dir(key))
                    self.store.remove_layer(key)
                    layers.append(key)
            # Build records are only shortcuts of the command line; each is checked on use.
            rmtree(self.store.root / RECORDS)
        return PruneReport(tuple(containers), tuple(images), tuple(layers), freed)
