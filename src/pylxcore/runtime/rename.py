"""``Container.rename``: a container under a new name, in any state (``docker rename``).

A container's key (its directory, liblxc name, cgroups, lock and place in
the network records) is fixed at creation; its name is its record's
``name`` (see pylxcore.runtime.names). So a rename touches nothing that
runs: it writes the record with the new name and the name index, and a
running container keeps running, its supervisor, exec, logs and stop
finding it as before. Its id, hostname and files stay as they were
(docker's rename keeps the hostname too). On a network with a DNS server,
the new name answers at once and the old one no longer does, as Docker's.

The steps, each atomic, under the new name's lock and the container's:
the index entry of the new name (nothing yet: an entry counts only when
the record it leads to has that name), DNS answering both names, the
record (the rename itself), then the old name's entry and DNS name go. A
crash leaves the old name working or the new one, never neither; what
else it left (a stale index entry, a DNS name too many) ``Engine.check``
removes (``repair_names``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import attrs

from pylxcore.errors import Conflict, StorageError
from pylxcore.network import dns
from pylxcore.network import records as netrecords
from pylxcore.runtime import names
from pylxcore.runtime.events import record_event
from pylxcore.spec import validate_container_name
from pylxcore.store import Store, atomic_write, canonical_json
from pylxcore.store.records import ContainerRecord
from pylxcore.supervisor.policy import POLICY_SPEC, PolicySpec

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


def rename(container: Container, new: str) -> None:
    """Rename ``container`` to ``new``, whatever its state. Raises SpecError
    (a bad name), Conflict (taken), ContainerNotFound, StorageError."""
    validate_container_name(new)
    collection = container._collection
    store = collection._store
    key = container.key
    # The new name's lock, then the container's (the order of create's
    # claim): no create or other rename takes the name meanwhile.
    with store.lock(f"name-{new}"), collection._lock(key):
        try:
            meta = container._meta()  # (raises ContainerNotFound)
            old = meta.name
            if new == old:
                return
            if names.find(store, new) is not None:
                raise Conflict(
                    f"cannot rename container {old!r}: a container named {new!r} already exists", name=new
                )
            names.point(store, new, key)
            set_dns_names(store, meta, [old, new])
            # Its host name stays (its uts name, from the config written at
            # creation: its name then, unless given), as docker's; say it now.
            host = meta.extra.get("hostname") or old
            renamed: ContainerRecord = attrs.evolve(meta, name=new, extra={**meta.extra, "hostname": host})
            atomic_write(collection._dir(key) / "meta.json", canonical_json(renamed.to_json()))
            _tell_supervisor(collection._dir(key), new)
            names.unpoint(store, old, key)
            set_dns_names(store, renamed, [new])
        finally:
            store.drop_lock(f"name-{new}")  # we hold it (see Store.lock): no file left behind
    container.name = new
    record_event(store, container, "rename", oldName=old)


def _tell_supervisor(ctrdir: Path, name: str) -> None:
    """Have a running supervisor name the container ``name`` in its events
    (it reads its policy.spec for each). Raises nothing: a supervisor that
    cannot be told names it as before until its next start."""
    if not (ctrdir / POLICY_SPEC).exists():
        return  # (never started: its first start writes one from the record)
    try:
        spec = PolicySpec.read(str(ctrdir))
        spec.name = name
        spec.write(str(ctrdir))
    except (OSError, ValueError):
        pass


def set_dns_names(store: Store, meta: ContainerRecord, answer: Iterable[str]) -> None:
    """Have the DNS servers of the networks of the container of record
    ``meta`` answer ``answer`` and its aliases with its address there."""
    on = meta.extra.get("networks") or {}
    if not on:
        return
    with netrecords.locked(store):
        for net, rec in netrecords.load_all(store).items():
            ep = rec.endpoints.get(meta.key)
            if net in on and ep is not None and rec.dns:
                dns.set_names(rec.bridge, meta.key, ep.ip, [*answer, *ep.aliases])


def repair_names(store: Store, fix: Callable[[str], None], *, repair: bool) -> None:
    """For ``Engine.check``: remove index entries that lead to no container
    of that name (a rename or removal that crashed halfway, a container that
    removed itself), add those of containers found by no entry (a create
    that crashed before writing one), and have each container's DNS names
    be its name and aliases. ``fix(what)`` is called for each."""
    def read(key: str) -> ContainerRecord | None:
        try:
            return names.record_of(store, key)
        except StorageError:
            return None  # (an unreadable record is the containers' check's to report)

    for tmp in (store.root / names.INDEX_DIR).glob(".*.tmp"):
        if not os.path.exists(f"/proc/{tmp.name.split('.')[-2]}"):
            fix(f"removed temporary file names/{tmp.name}")
            if repair:
                tmp.unlink()
    # Each under its name's lock, if free (read again under it): a create or
    # rename that holds it is under way, and its entry not stale (nor missing) yet.
    for name, key in sorted(names.entries(store).items()):
        with store.lock_if_free(f"name-{name}") as free:
            rec = read(key) if free else None
            if free and (rec is None or rec.name != name) and names.indexed(store, name) == key:
                fix(f"removed stale name index entry {name} -> {key}")
                if repair:
                    names.unpoint(store, name, key)
    for d in sorted(store.containers_dir.iterdir()):
        rec = read(d.name)
        if rec is None:
            continue
        if d.name != rec.name and names.indexed(store, rec.name) != d.name:
            with store.lock_if_free(f"name-{rec.name}") as free:
                now = read(d.name) if free else None
                if now is not None and now.name == rec.name and names.indexed(store, rec.name) != d.name:
                    fix(f"restored name index entry {rec.name} -> {d.name}")
                    if repair:
                        names.point(store, rec.name, d.name)
        if rec.extra.get("networks") and _dns_stale(store, rec):
            fix(f"set the DNS names of container {rec.name} to its name")
            if repair:
                set_dns_names(store, rec, [rec.name])


def _dns_stale(store: Store, rec: ContainerRecord) -> bool:
    """Whether a DNS server of the networks of the container of record
    ``rec`` answers a name that is not its name or alias (a rename that
    crashed after answering both)."""
    for net in rec.extra.get("networks") or {}:
        try:
            net_rec = netrecords.load(store, net)
        except Exception:  # noqa: BLE001  (a gone or broken network is the network check's)
            continue
        hosts = dns.dns_dir(net_rec.bridge) / "hosts" / rec.key
        try:
            said = hosts.read_text().split()[1:]
        except OSError:
            continue
        ep = net_rec.endpoints.get(rec.key)
        if ep is not None and set(said) != {rec.name, *ep.aliases}:
            return True
    return False


__all__ = ["rename", "repair_names", "set_dns_names"]
