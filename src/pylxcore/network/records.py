"""The networks' records in the store: one JSON file a network, typed, and
the only code that knows that file's layout.

``ROOT/networks/<name>.json`` holds the network (bridge, subnet, gateway,
internal, its DNS server's pid) and its endpoints: for each container on it,
the address allocated to it, its aliases and published ports. Every change
is made under the store's ``networks`` lock and committed by a rename, so
the allocations, the nftables table and the DNS files, all derived from these
records, are rebuilt from one consistent state.

Like the store's own documents (pylxcore.store.records, whose schema helpers
these use), a record carries ``schema``: a record without one (written
before it had one) still loads, a newer one is a StorageError naming the file.

An endpoint is allocated before its container exists (the address goes into
the container's liblxc config), so it carries its allocating process's owner
tag until the container is made: ``stale()`` tells a container that is gone
from one still being made.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import attrs

from pylxcore.errors import NetworkNotFound, StorageError
from pylxcore.store import Store, atomic_write, canonical_json, make_private_dir, owner_alive
from pylxcore.store import records as documents
from pylxcore.store.records import bad_record, schema_of

NETWORKS = "networks"  # the dir under the store root
# The schema a network record is written with (0: the layout before it had one).
NETWORK_SCHEMA = 1

Ports = list[list[Any]]  # [["80/tcp", "0.0.0.0", 8080], ...]: [port/proto, host ip, host port]


def _ports(value: Any) -> Ports:
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 3 and isinstance(p[0], str) and isinstance(p[1], str)
        and isinstance(p[2], int) and not isinstance(p[2], bool)
        for p in value
    )
    if not ok:
        raise ValueError(f"expected published ports [[port/proto, host ip, host port], ...], got {value!r}")
    return [list(p) for p in value]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@attrs.define
class EndpointRecord:
    """A container's place on one network: its address, the names it answers
    to besides its own, its published ports and, until the container is
    made, the owner tag of the process allocating it (see ``stale()``)."""

    ip: str
    aliases: list[str] = attrs.Factory(list)
    ports: Ports = attrs.Factory(list)
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ip": self.ip, "aliases": list(self.aliases)}
        data["ports"] = [list(p) for p in self.ports]
        if self.owner is not None:
            data["owner"] = self.owner
        return data

    @classmethod
    def from_json(cls, data: Any) -> EndpointRecord:
        """Raises KeyError, TypeError, ValueError, AttributeError for a malformed endpoint."""
        aliases = data.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"expected a list of aliases, got {aliases!r}")
        owner = data.get("owner")
        return cls(
            ip=str(data["ip"]),
            aliases=list(aliases),
            ports=_ports(data.get("ports") or []),
            owner=None if owner is None else str(owner),
        )


@attrs.define
class NetworkRecord:
    """``networks/<name>.json``: a network and the endpoints on it, by
    container name. ``dns_pid`` and ``dns_start`` name its DNS server's
    process (None: it has none yet, or none at all: ``dns`` is False on the
    default bridge)."""

    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str
    internal: bool
    dns: bool
    created: float
    endpoints: dict[str, EndpointRecord] = attrs.Factory(dict)
    dns_pid: int | None = None
    dns_start: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": NETWORK_SCHEMA,
            "name": self.name,
            "id": self.id,
            "bridge": self.bridge,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "internal": self.internal,
            "dns": self.dns,
            "created": self.created,
            "endpoints": {c: ep.to_json() for c, ep in self.endpoints.items()},
        }
        # (as before: a network whose DNS server never started has no such keys)
        if self.dns_pid is not None or self.dns_start is not None:
            data["dns_pid"], data["dns_start"] = self.dns_pid, self.dns_start
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path) -> NetworkRecord:
        """The record ``data`` read from ``path``. Raises StorageError."""
        schema_of(data, NETWORK_SCHEMA, path)
        try:
            endpoints = data.get("endpoints") or {}
            if not isinstance(endpoints, dict):
                raise ValueError(f"endpoints is not a mapping: {endpoints!r}")
            return cls(
                name=str(data["name"]),
                id=str(data["id"]),
                bridge=str(data["bridge"]),
                subnet=str(data["subnet"]),
                gateway=str(data["gateway"]),
                internal=bool(data.get("internal", False)),
                dns=bool(data.get("dns", False)),
                created=float(data.get("created", 0.0)),
                endpoints={str(c): EndpointRecord.from_json(ep) for c, ep in endpoints.items()},
                dns_pid=_optional_int(data.get("dns_pid")),
                dns_start=_optional_int(data.get("dns_start")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise bad_record(path, err) from err


def networks_dir(store: Store) -> Path:
    d = store.root / NETWORKS
    if not d.is_dir():
        make_private_dir(d)
    return d


@contextlib.contextmanager
def locked(store: Store) -> Iterator[None]:
    """Hold the lock every change to networks and their endpoints is made under.
    (It makes no dir: a call refused under it must leave the store as it was.)"""
    with store.lock("networks"):
        yield


def files_dir(store: Store, container: str) -> Path:
    """Where container ``container``'s /etc/hosts and /etc/resolv.conf are kept."""
    return networks_dir(store) / "files" / container


def load_all(store: Store) -> dict[str, NetworkRecord]:
    """Every network's record by name. Raises StorageError (a record is
    unreadable, malformed, or of a newer schema)."""
    out = {}
    # (a reader makes nothing: a store that never had a network has no dir)
    for path in sorted((store.root / NETWORKS).glob("*.json")):
        rec = NetworkRecord.from_json(documents.load(path), path)
        out[rec.name] = rec
    return out


def load(store: Store, name: str) -> NetworkRecord:
    """The record of network ``name``. Raises NetworkNotFound, StorageError
    (unreadable, malformed, or of a newer schema)."""
    path = store.root / NETWORKS / f"{name}.json"
    try:
        data = documents.load(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NetworkNotFound(f"no network {name!r} in {store.root}", name=name) from None
    return NetworkRecord.from_json(data, path)


def save(store: Store, rec: NetworkRecord) -> None:
    atomic_write(networks_dir(store) / f"{rec.name}.json", canonical_json(rec.to_json()))


def delete(store: Store, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(networks_dir(store) / f"{name}.json")


def container_name(store: Store, container: str) -> str:
    """The name of the container whose endpoints are ``container``'s (its
    key: a rename changes its name only, see pylxcore.runtime.names);
    ``container`` itself when its record cannot say."""
    try:
        name = documents.load(store.containers_dir / container / "meta.json").get("name")
    except (OSError, AttributeError, StorageError):
        return container
    return name if isinstance(name, str) and name else container


def stale(store: Store, container: str, endpoint: EndpointRecord) -> bool:
    """Whether ``endpoint`` belongs to a container that no longer exists (and
    is not being made by a live process)."""
    if (store.containers_dir / container / "meta.json").exists():
        return False
    return not (endpoint.owner and owner_alive(endpoint.owner))


def sweep(store: Store, recs: dict[str, NetworkRecord]) -> list[str]:
    """Drop the endpoints of containers that are gone from ``recs`` (saved);
    returns "network/container" for each. Caller holds ``locked``."""
    dropped = []
    for rec in recs.values():
        gone = [c for c, ep in rec.endpoints.items() if stale(store, c, ep)]
        for c in gone:
            del rec.endpoints[c]
            dropped.append(f"{rec.name}/{c}")
        if gone:
            save(store, rec)
    return dropped


__all__ = [
    "NETWORK_SCHEMA",
    "EndpointRecord",
    "NetworkRecord",
    "Ports",
    "delete",
    "files_dir",
    "load",
    "load_all",
    "locked",
    "networks_dir",
    "save",
    "stale",
    "sweep",
]
