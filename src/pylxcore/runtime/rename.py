"""``Container.rename``: a stopped container under a new name (``docker rename``).

A container is its directory, ``containers/NAME``, and liblxc knows it by
that name: its config names the directory (the writable layer's path) and
its cgroups. Renaming moves the directory, rewrites those two things and the
record, under the locks of both names; its id, hostname and files stay as
they were (docker's rename keeps the hostname too). What runs is found by
its name, so a running container is not renamed, nor one on a network (its
addresses and names are the network's records).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs

from pylxcore.errors import Conflict, InvalidState
from pylxcore.runtime.cgroups import cgroup_name
from pylxcore.runtime.events import record_event
from pylxcore.spec import validate_container_name
from pylxcore.store import atomic_write, canonical_json
from pylxcore.store.records import ContainerRecord

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


def rename(container: Container, new: str) -> None:
    """Rename ``container`` to ``new``. Raises SpecError (a bad name),
    Conflict (taken), InvalidState (running, paused or restarting; on a
    network), ContainerNotFound."""
    validate_container_name(new)
    collection = container._collection
    store = collection._store
    old = container.name
    if new == old:
        return
    # Both names' locks, in one order: two renames never wait on each other.
    first, second = sorted((old, new))
    with collection._lock(first), collection._lock(second):
        container.reload()
        if container.state.value not in ("created", "exited"):
            raise InvalidState(
                f"cannot rename container {old!r}: it is {container.state.value} (stop it first)",
                name=old,
                state=container.state.value,
                operation="rename",
            )
        meta = container._meta()
        if meta.extra.get("networks"):
            raise InvalidState(
                f"cannot rename container {old!r}: it is on a network, whose records know it by name",
                name=old,
                state=container.state.value,
                operation="rename",
            )
        src, dst = collection._dir(old), collection._dir(new)
        if os.path.lexists(dst):
            raise Conflict(f"a container named {new!r} already exists", name=new)
        config = (src / "config").read_text()
        config = config.replace(f"{src}/", f"{dst}/")
        for suffix in ("", ".monitor"):
            was, now = cgroup_name(store.root_id, old), cgroup_name(store.root_id, new)
            config = config.replace(f" = {was}{suffix}\n", f" = {now}{suffix}\n")
        renamed: ContainerRecord = attrs.evolve(meta, name=new)
        # The record and config first, then the directory: a crash between
        # leaves the old name with files that say the new one, which
        # ``Engine.check`` can see; never a directory without its record.
        atomic_write(src / "config", config)
        os.chmod(src / "config", 0o600)
        atomic_write(src / "meta.json", canonical_json(renamed.to_json()))
        os.rename(src, dst)
        store.drop_lock(f"ctr-{old}")
    container.name = new
    record_event(store, container, "rename", oldName=old)
