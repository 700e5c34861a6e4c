"""``engine.volumes``: named volumes, data that outlives containers (``docker volume``).

A volume is a directory of the store, ``ROOT/volumes/NAME/`` holding
``meta.json`` (its name, labels, creation time) and ``_data/`` (what
containers see), as Docker's local driver keeps them. A container mounts
``_data`` as a bind mount (``Mount(volume="data", target="/data")``); a
volume named by a mount and not there yet is made then, as ``docker run -v
data:/data`` makes it. A volume a container uses cannot be removed.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import attrs

from pylxcore.errors import Conflict, StorageError, VolumeNotFound
from pylxcore.spec import Mount, validate
from pylxcore.store import atomic_write, canonical_json, dir_size, rmtree

if TYPE_CHECKING:
    from pylxcore.engine import Engine


@attrs.frozen
class Volume:
    """A named volume: ``name``, ``mountpoint`` (its data on the host),
    ``labels`` and ``created`` (unix time)."""

    name: str
    mountpoint: Path
    labels: dict[str, str]
    created: float

    def inspect(self) -> dict[str, Any]:
        """As ``docker volume inspect`` shows it."""
        return {
            "Name": self.name,
            "Driver": "local",
            "Mountpoint": str(self.mountpoint),
            "Labels": dict(self.labels) or None,
            "Scope": "local",
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }


class VolumeCollection:
    """``engine.volumes``: create, get, list, remove and prune volumes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store
        self._dir = engine.store.root / "volumes"

    def _read(self, name: str) -> Volume:
        path = self._dir / name / "meta.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise VolumeNotFound(f"no volume {name!r} in {self._store.root}", name=name) from None
        except (OSError, ValueError) as err:
            raise StorageError(f"cannot read volume {name!r}: {err}", path=str(path)) from err
        labels = dict(data.get("labels") or {})
        return Volume(name, self._dir / name / "_data", labels, float(data["created"]))

    def create(self, name: str | None = None, *, labels: Mapping[str, str] | None = None) -> Volume:
        """Make volume ``name`` (default: a random one, as docker's anonymous
        volumes); an existing one is returned as it is (``docker volume
        create`` does the same). Raises SpecError (a bad name or label), StorageError."""
        name = validate.volume_name(name if name is not None else os.urandom(32).hex())
        labels = validate.labels(labels)
        with self._store.lock("volumes"):
            if (self._dir / name / "meta.json").exists():
                return self._read(name)
            self._dir.mkdir(mode=0o700, exist_ok=True)
            staged = self._store.staging_dir("volume")
            try:
                (staged / "_data").mkdir(mode=0o755)
                os.chmod(staged / "_data", 0o755)  # (whatever the umask: docker's mode)
                atomic_write(staged / "meta.json", canonical_json({"created": time.time(), "labels": labels}))
                os.rename(staged, self._dir / name)
            except OSError as err:
                rmtree(staged)
                raise StorageError(f"cannot make volume {name!r}: {err}", path=str(self._dir)) from err
        return self._read(name)

    def get(self, name: str) -> Volume:
        """Volume ``name``. Raises VolumeNotFound, StorageError."""
        return self._read(validate.volume_name(name))

    def list(self) -> builtins.list[Volume]:
        """Every volume, by name."""
        if not self._dir.is_dir():
            return []
        out = []
        for d in sorted(self._dir.iterdir()):
            try:
                out.append(self._read(d.name))
            except (VolumeNotFound, StorageError):
                continue  # being made or removed
        return out

    def users(self, name: str) -> builtins.list[str]:
        """The containers that mount volume ``name``."""
        metas = self._engine.containers._metas()
        return sorted(m.name for m in metas if any(x.volume == name for x in m.mounts))

    def remove(self, name: str, *, force: bool = False) -> None:
        """Delete volume ``name`` and its data. Raises VolumeNotFound (unless
        ``force``), Conflict (a container uses it, even with ``force``, as docker)."""
        with self._store.lock("volumes"):
            try:
                self.get(name)
            except VolumeNotFound:
                if force:
                    return
                raise
            users = self.users(name)
            if users:
                raise Conflict(f"volume {name!r} is in use by container(s) {', '.join(users)}", name=name)
            doomed = self._store.staging_dir("rm-volume")
            os.rename(self._dir / name, doomed / name)
            rmtree(doomed)

    def prune(self) -> tuple[builtins.list[str], int]:
        """Delete every volume no container uses; returns (names, bytes freed)."""
        removed, freed = [], 0
        for volume in self.list():
            if self.users(volume.name):
                continue
            size = dir_size(volume.mountpoint)
            try:
                self.remove(volume.name)
            except (Conflict, VolumeNotFound):
                continue  # taken or removed meanwhile
            removed.append(volume.name)
            freed += size
        return removed, freed

    def resolve(
        self, mounts: Sequence[Mount], *, layers: Sequence[str] = (), userns: bool = False
    ) -> builtins.list[Mount]:
        """``mounts`` with each volume's data dir as its source. A volume not
        there yet is made; an empty one gets what the image (``layers``,
        bottom first) has at the mount's target, as docker fills it; a new
        one for a ``userns`` container belongs to its root's host ids.
        Raises SpecError, StorageError, LXCError (userns without subordinate ids)."""
        out = []
        for m in mounts:
            if isinstance(m, Mount) and m.volume is not None:
                made = not (self._dir / m.volume / "meta.json").exists()
                volume = self.create(m.volume)
                # As docker's: an empty volume gets the image's files (each time it is empty).
                if layers and not any(volume.mountpoint.iterdir()):
                    self._fill(volume, layers, m.target)
                if made and userns:
                    _shift_owners(volume.mountpoint)
                m = attrs.evolve(m, source=str(volume.mountpoint))
            out.append(m)
        return out

    def _fill(self, volume: Volume, layers: Sequence[str], target: str) -> None:
        """Copy the image's files at ``target`` into the empty ``volume``: its
        layers mounted read-only in a private mount namespace (gone with the
        copy), ``target`` resolved inside the image's root first (its
        symlinks never lead to the host's files). Raises StorageError."""
        from pylxcore.runtime.rootfs import MOUNT_OPTIONS_MAX, LayerStack

        stack = LayerStack([self._store.layer_dir(k) / "fs" for k in reversed(layers)])
        resolved = stack.resolve(target)
        found = stack.lookup(resolved)
        if found is None or found.is_symlink() or not found.is_dir() or not any(found.iterdir()):
            return
        mnt, empty = self._store.staging_dir("fill"), self._store.staging_dir("fill-empty")
        # (an empty lowest layer: overlayfs wants two lower layers when it has no upper one)
        lowers = [*(self._store.short_path(k) for k in reversed(layers)), str(empty)]
        options = "lowerdir=" + ":".join(lowers)
        script = 'mount -t overlay overlay -o "$1" "$2" && cp -a -- "$2$3/." "$4/"'
        try:
            if len(options) > MOUNT_OPTIONS_MAX:
                raise StorageError("the image has too many layers to fill a volume from",
                                   path=str(volume.mountpoint))
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                    "sh", options, str(mnt), resolved, str(volume.mountpoint)]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        finally:
            os.rmdir(mnt)
            os.rmdir(empty)
        if proc.returncode != 0:
            raise StorageError(
                f"cannot fill volume {volume.name!r} from the image: {proc.stderr.strip()}",
                path=str(volume.mountpoint),
            )


def _shift_owners(top: Path) -> None:
    """Give a user-namespaced container's root the new volume ``top`` (its
    files to the host ids of its range), as docker with userns-remap does."""
    from pylxcore.runtime.userns import subordinate_ids

    ids = subordinate_ids()
    for dirpath, dirnames, filenames in os.walk(top):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for entry in [dirpath, *(os.path.join(dirpath, n) for n in [*filenames, *links])]:
            st = os.lstat(entry)
            os.chown(entry, st.st_uid + ids[0], st.st_gid + ids[2], follow_symlinks=False)


__all__ = ["Volume", "VolumeCollection"]
