"""``engine.networks``: create, list and remove networks, and connect
containers to them.

A network is a record in the store (pylxcore.network.records), a bridge of
the library's own (pylxcore.network.links), rules in the library's nftables
table (pylxcore.network.nftables) and, for user networks, a dnsmasq
(pylxcore.network.dns). The records are the truth: bridge, rules and DNS
files are made again from them whenever they may be missing (a container
starting after the host rebooted) and ``check()`` removes what no record
accounts for. Every change holds the store's ``networks`` lock.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import attrs

from pylxcore.errors import Conflict, LXCError, NetworkNotFound, SpecError
from pylxcore.network import conntrack, dns, endpoint, links, netns, nftables, records, subnets
from pylxcore.network.attachment import Attachment
from pylxcore.network.records import EndpointRecord, NetworkRecord
from pylxcore.spec import validate
from pylxcore.store import Store, atomic_write, canonical_json, owner_tag, rmtree
from pylxcore.store.records import ContainerRecord

if TYPE_CHECKING:
    from pylxcore.engine import Engine

DEFAULT_NETWORK = "bridge"  # Docker's name for its default network
RESERVED = ("none", "host")
HOST_LOCK = "/run/pylxcore/networks.lock"  # subnets are chosen host-wide, across roots


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    os.makedirs(os.path.dirname(HOST_LOCK), mode=0o755, exist_ok=True)
    fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@attrs.define(eq=False)
class Network:
    """A handle on one network, as of its last ``reload()``."""

    _collection: NetworkCollection = attrs.field(repr=False)
    name: str
    id: str = attrs.field(repr=False)
    subnet: str
    gateway: str = attrs.field(repr=False)
    internal: bool
    bridge: str = attrs.field(repr=False)
    created: float = attrs.field(repr=False)
    containers: tuple[str, ...] = attrs.field(default=(), repr=False)  # the names of those on it

    def reload(self) -> Network:
        """Read the network again. Raises NetworkNotFound."""
        fresh = self._collection.get(self.name)
        self.containers = fresh.containers
        return self

    def remove(self) -> None:
        """Remove the network. Raises Conflict (containers on it), NetworkNotFound."""
        self._collection.remove(self.name)

    def connect(self, container: str, *, aliases: Sequence[str] = (), ip: str | None = None) -> None:
        """See NetworkCollection.connect."""
        self._collection.connect(self.name, container, aliases=aliases, ip=ip)
        self.reload()

    def disconnect(self, container: str) -> None:
        """See NetworkCollection.disconnect."""
        self._collection.disconnect(self.name, container)
        self.reload()

    def inspect(self) -> dict[str, Any]:
        """Everything known about the network, as plain data (``docker network inspect``)."""
        rec_store = self._collection.store
        rec = records.load(rec_store, self.name)
        return {
            "name": rec.name,
            "id": rec.id,
            "driver": "bridge",
            "subnet": rec.subnet,
            "gateway": rec.gateway,
            "internal": rec.internal,
            "dns": rec.dns,
            "bridge": rec.bridge,
            "created": rec.created,
            "containers": {  # (by name: the records know a container by its key)
                records.container_name(rec_store, c): {
                    "ip": ep.ip, "aliases": list(ep.aliases), "ports": [list(p) for p in ep.ports]
                }
                for c, ep in sorted(rec.endpoints.items())
            },
        }


class NetworkCollection:
    """``engine.networks``: bridge networks of this root's containers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store
        rid = self._store.root_id
        self._prefix = "pxb" + rid[:5]  # every bridge of this root starts so
        self._table = nftables.table_name(rid)

    @property
    def store(self) -> Store:
        return self._store

    @property
    def bridge_prefix(self) -> str:
        """What the names of this root's bridges start with."""
        return self._prefix

    @property
    def table(self) -> str:
        """The name of this root's nftables table (family ip)."""
        return self._table

    # -- helpers -------------------------------------------------------------

    def _bridge(self, name: str) -> str:
        return self._prefix + hashlib.sha256(name.encode()).hexdigest()[:6]

    def _handle(self, rec: NetworkRecord) -> Network:
        return Network(
            self, rec.name, rec.id, rec.subnet, rec.gateway, rec.internal, rec.bridge,
            rec.created, tuple(sorted(records.container_name(self._store, c) for c in rec.endpoints)),
        )

    def _apply(self, recs: Mapping[str, NetworkRecord]) -> None:
        nftables.apply(self._table, recs.values())

    def _up(self, rec: NetworkRecord) -> None:
        """Make sure the bridge and DNS server of ``rec`` are there (after a
        reboot they are not). Caller holds the lock; ``rec`` is saved if changed."""
        net = subnets.parse_subnet(rec.subnet)
        links.ensure_bridge(rec.bridge, rec.gateway, net.prefixlen)
        if rec.dns and not dns.running(rec.dns_pid, rec.dns_start):
            rec.dns_pid, rec.dns_start = dns.start(rec.bridge, rec.gateway, rec.internal)
            for c, ep in rec.endpoints.items():
                dns.set_names(rec.bridge, c, ep.ip, [c, *ep.aliases])
            records.save(self._store, rec)

    def _down(self, rec: NetworkRecord) -> None:
        dns.stop(rec.dns_pid, rec.dns_start)
        dns.remove_files(rec.bridge)
        links.delete_link(rec.bridge)

    def _sweep(self, recs: dict[str, NetworkRecord]) -> list[str]:
        dropped = records.sweep(self._store, recs)
        for item in dropped:
            net, container = item.split("/", 1)
            dns.drop_names(recs[net].bridge, container)
            netns.drop(netns.ns_path(self._store.root_id, container))
        return dropped

    def _new(
        self, recs: dict[str, NetworkRecord], name: str, subnet: str | None, internal: bool
    ) -> NetworkRecord:
        """Make network ``name`` (caller holds the lock); its record."""
        if name in recs:
            raise Conflict(f"a network named {name!r} already exists", name=name)
        with _host_lock():
            used = links.host_subnets() + [subnets.parse_subnet(r.subnet) for r in recs.values()]
            if subnet is None:
                net = subnets.pick(used)
            else:
                net = subnets.parse_subnet(subnet)
                subnets.check_free(net, used)
            rec = NetworkRecord(
                name=name,
                id=os.urandom(32).hex(),
                bridge=self._bridge(name),
                subnet=str(net),
                gateway=subnets.gateway(net),
                internal=internal,
                dns=name != DEFAULT_NETWORK,  # as Docker: no names on the default bridge
                created=time.time(),
            )
            # The record first: a crash after it leaves a network that is made
            # whole on first use, never a bridge that nothing accounts for.
            records.save(self._store, rec)
            recs[name] = rec
            try:
                self._up(rec)
                self._apply(recs)
            except BaseException:
                del recs[name]
                self._down(rec)
                records.delete(self._store, name)
                raise
        return rec

    # -- public ----------------------------------------------------------------

    def create(self, name: str, *, subnet: str | None = None, internal: bool = False) -> Network:
        """Make a bridge network: a bridge of its own, a private subnet that
        collides with nothing on the host (or ``subnet``, e.g. "10.5.0.0/24"),
        NAT out (none with ``internal=True``), and a DNS server that answers
        the names and aliases of the containers on it. Raises SpecError (bad
        name or subnet), Conflict (name taken, subnet in use, none free),
        LXCError (the host refused a link, rule or DNS server)."""
        validate.network_name(name)
        if name in RESERVED:
            raise SpecError(f"{name!r} is a network mode, not a name a network can have", key="network")
        if not isinstance(internal, bool):
            raise TypeError(f"internal must be True or False, not {internal!r}")
        with records.locked(self._store):
            recs = records.load_all(self._store)
            return self._handle(self._new(recs, name, subnet, internal))

    def get(self, name: str) -> Network:
        """The network named ``name``. Raises NetworkNotFound."""
        if not isinstance(name, str) or name in RESERVED:
            raise NetworkNotFound(f"no network {name!r} in {self._store.root}", name=str(name))
        with records.locked(self._store):
            recs = records.load_all(self._store)
            self._sweep(recs)
        if name not in recs:
            raise NetworkNotFound(f"no network {name!r} in {self._store.root}", name=name)
        return self._handle(recs[name])

    def list(self) -> list[Network]:
        """Every network of this root, by name."""
        with records.locked(self._store):
            recs = records.load_all(self._store)
            self._sweep(recs)
        return [self._handle(r) for _, r in sorted(recs.items())]

    def remove(self, name: str) -> None:
        """Remove network ``name``: its bridge, rules and DNS server. Raises
        NetworkNotFound, Conflict (containers are on it: remove or disconnect
        them first)."""
        with records.locked(self._store):
            recs = records.load_all(self._store)
            self._sweep(recs)
            if name not in recs:
                raise NetworkNotFound(f"no network {name!r} in {self._store.root}", name=name)
            rec = recs[name]
            if rec.endpoints:
                raise Conflict(
                    f"network {name!r} has containers on it: {', '.join(sorted(rec.endpoints))}", name=name
                )
            del recs[name]
            self._apply(recs)  # rules first: none may point at a bridge that is gone
            self._down(rec)
            records.delete(self._store, name)
            if not recs:
                netns.forget_dir(self._store.root_id)  # (no container can start on a network now)

    def prune(self) -> builtins.list[str]:
        """Remove every network no container is on (the default bridge too:
        it is made again on first use); their names."""
        removed = []
        for net in self.list():
            try:
                self.remove(net.name)
                removed.append(net.name)
            except (Conflict, NetworkNotFound):
                continue  # in use, or removed meanwhile
        return removed

    # -- containers on networks ----------------------------------------------

    def _endpoint(
        self, recs: dict[str, NetworkRecord], network: str, container: str, aliases: Sequence[str],
        ip: str | None = None,
    ) -> EndpointRecord:
        """Allocate ``container`` an address on ``network`` (the default bridge
        is made on first use): ``ip``, or the lowest free one. Caller holds
        the lock and saves the record."""
        if network == DEFAULT_NETWORK and network not in recs:
            self._new(recs, network, None, False)
        if network not in recs:
            raise NetworkNotFound(f"no network {network!r} in {self._store.root}", name=network)
        rec = recs[network]
        if container in rec.endpoints:
            raise Conflict(f"container {container!r} is already on network {network!r}", name=container)
        if aliases and not rec.dns:
            raise SpecError(
                f"network {network!r} (the default bridge) has no names, so no aliases", key="aliases"
            )
        net, taken = subnets.parse_subnet(rec.subnet), [ep.ip for ep in rec.endpoints.values()]
        if ip is None:
            ip = subnets.free_address(net, taken)
        elif not rec.dns:  # (as Docker: a chosen address only on a network of the user's)
            raise SpecError(f"network {network!r} (the default bridge) gives no chosen addresses", key="ip")
        else:
            ip = subnets.chosen_address(net, ip, taken)
        ep = EndpointRecord(ip=ip, aliases=list(aliases), owner=owner_tag())
        rec.endpoints[container] = ep
        return ep

    def attach(
        self,
        container: str,
        network: str,
        *,
        ports: object = None,
        hostname: str | None = None,
        aliases: Sequence[str] = (),
        ip: str | None = None,
        dns_settings: Mapping[str, Sequence[str]] | None = None,
        name: str | None = None,
    ) -> Attachment:
        """For pylxcore.runtime: allocate container ``container`` (not made yet)
        an address on ``network`` (``ip``, or a free one), and host ports for
        ``ports`` (see pylxcore.spec.validate.published_ports), with their
        rules; what that makes of it. Its endpoint carries this process's
        owner tag until ``committed()``. ``dns_settings`` (from
        pylxcore.spec.validate.dns_settings) go into its resolv.conf; name
        servers only on the default bridge: on a user network the network's
        DNS server answers. Raises SpecError (``ip`` not of the network's
        subnet, or on the default bridge; name servers on a user network),
        NetworkNotFound, Conflict (a port, ``ip`` or the last address taken), LXCError.
        ``container`` is the container's key; ``name`` (default: the key) the
        name its DNS answers to (see pylxcore.runtime.names)."""
        validate.network_name(network)
        wanted = validate.published_ports(ports)
        if hostname is not None:
            validate.hostname(hostname)
        aliases = [validate.hostname(a, "aliases") for a in aliases]
        with records.locked(self._store):
            recs = records.load_all(self._store)
            self._sweep(recs)
            taken = [p for r in recs.values() for e in r.endpoints.values() for p in e.ports]
            ep = self._endpoint(recs, network, container, aliases, ip)
            rec = recs[network]
            if rec.dns and (dns_settings or {}).get("servers"):
                rec.endpoints.pop(container)
                raise SpecError(
                    f"network {network!r} has a DNS server of its own, which forwards to the host's"
                    " resolvers: name servers can be given only on the default bridge",
                    key="dns",
                )
            try:
                ep.ports = endpoint.allocate_ports(wanted, taken)
                records.save(self._store, rec)
                self._up(rec)
                self._apply(recs)
                if rec.dns:
                    dns.set_names(rec.bridge, container, ep.ip, [name or container, *aliases])
            except BaseException:
                rec.endpoints.pop(container, None)
                records.save(self._store, rec)
                dns.drop_names(rec.bridge, container)
                with contextlib.suppress(LXCError):
                    self._apply(recs)
                raise
        return endpoint.attachment(
            self._store.root_id, str(records.files_dir(self._store, container)), container, hostname,
            [(rec, ep)], ep.ports, dns_settings,
        )

    def committed(self, container: str) -> None:
        """For pylxcore.runtime: ``container`` now exists; its endpoints are
        released with it from now on, not with the process that made it."""
        with records.locked(self._store):
            for rec in records.load_all(self._store).values():
                ep = rec.endpoints.get(container)
                if ep is not None and ep.owner is not None:
                    ep.owner = None
                    records.save(self._store, rec)

    def release(self, container: str, network: str | None = None) -> None:
        """For pylxcore.runtime: give back what container ``container`` (removed)
        held on ``network`` (None: on every network): addresses, published
        ports and their rules, DNS names. Raises LXCError."""
        if network is None:
            # (A stopped container's veths are in it: they go with it, in the background.)
            netns.drop(netns.ns_path(self._store.root_id, container))
        with records.locked(self._store):
            recs = records.load_all(self._store)
            changed, published = False, []
            for rec in recs.values():
                if network not in (None, rec.name):
                    continue
                ep = rec.endpoints.pop(container, None)
                if ep is not None:
                    records.save(self._store, rec)
                    dns.drop_names(rec.bridge, container)
                    changed = True
                    if ep.ports:
                        published.append(ep.ip)
            if changed:
                self._apply(recs)
            if not (self._store.containers_dir / container / "meta.json").exists():
                rmtree(records.files_dir(self._store, container))
            # The connections to its published ports, once no rule leads to it:
            # the kernel would send their next packets (a UDP client's) to the
            # address's next holder. Only then: a dump walks the kernel's whole
            # table (10-40 ms); check() forgets the rest (see pylxcore.network.conntrack).
            conntrack.forget_addresses(published)

    def ready(self, meta: Mapping[str, Any]) -> None:
        """For pylxcore.runtime, before a container starts: make sure the
        bridges, rules and DNS servers of its networks (``meta``: its record)
        are there. Raises LXCError."""
        names = list(meta.get("networks") or {})
        if not names:
            return
        with records.locked(self._store):
            recs = records.load_all(self._store)
            for name in names:
                if name not in recs:
                    raise LXCError(
                        f"cannot start container {meta['name']!r}: its network {name!r} no longer exists",
                        operation="start",
                        container=meta["name"],
                    )
                self._up(recs[name])
            self._apply(recs)
            # (by its key: its dir, its config and its place in the records; see ContainerRecord)
            key = str(meta["key"])
            config = self._store.containers_dir / key / "config"
            endpoint.make_namespace(self._store.root_id, key, config, meta["networks"], recs)

    def started(self, meta: Mapping[str, Any]) -> None:
        """For pylxcore.runtime, once a container (``meta``: its record) runs:
        its processes hold its network namespace now, so its file goes
        (see pylxcore.network.netns), and the namespace with its veths when
        they end, like Docker's sandbox at a stop. Kept for a restart policy:
        the supervisor starts the container again in the same namespace.
        Raises LXCError."""
        if meta.get("networks") and str(meta.get("restart") or "no") == "no":
            netns.drop(netns.ns_path(self._store.root_id, str(meta["key"])))

    def _reconfigure(
        self, container: str, change: Callable[[dict[str, NetworkRecord], dict[str, Any]], None]
    ) -> None:
        """Apply ``change(recs, meta)`` to a container, then make its
        interfaces (when it runs), config, /etc/hosts and record match its
        endpoints."""
        ctrs = self._engine.containers
        c = ctrs.get(container)
        with ctrs._lock(c.key):
            init = c._pids()[0] if c.status() in ("running", "paused") else None
            # The record as a document: ``change`` edits its networks' fields.
            meta = ContainerRecord.read(c.dir / "meta.json").to_json()
            if "networks" not in meta:
                raise Conflict(
                    f"container {c.name!r} was made with network={meta['network']!r}: it has no place on"
                    " networks to change",
                    name=c.name,
                )
            with records.locked(self._store):
                recs = records.load_all(self._store)
                self._sweep(recs)
                before = set(meta["networks"])
                change(recs, meta)
                pairs = [(recs[n], recs[n].endpoints[c.key]) for n in meta["networks"]]
                files = records.files_dir(self._store, c.key)
                att = endpoint.attachment(
                    self._store.root_id, str(files), c.key, meta.get("hostname"), pairs, meta["ports"],
                    meta.get("dns"),
                )
                for rec, _ in pairs:
                    self._up(rec)
                self._apply(recs)
                if init is not None:
                    try:
                        self._replug(c.key, init, before, pairs)
                    except LXCError:
                        for rec, _ in pairs:  # give back what it could not be plugged into
                            if rec.name not in before and rec.endpoints.pop(c.key, None) is not None:
                                records.save(self._store, rec)
                                dns.drop_names(rec.bridge, c.key)
                        self._apply(recs)
                        raise
                config = c.dir / "config"
                atomic_write(config, endpoint.net_lines(config.read_text(), att.nics))
                os.chmod(config, 0o600)
                for file, (_, text) in att.files().items():
                    with open(files / file, "w") as fh:  # in place: it is bind-mounted
                        fh.write(text)
                meta["networks"] = att.meta["networks"]
                meta["network"] = next(iter(meta["networks"]), "none")
                record = ContainerRecord.from_json(meta, c.dir / "meta.json")
                atomic_write(c.dir / "meta.json", canonical_json(record.to_json()))

    def _replug(
        self, container: str, init: int, before: set[str],
        pairs: Sequence[tuple[NetworkRecord, EndpointRecord]],
    ) -> None:
        """Give running container ``container`` (its init: ``init``) an
        interface on each network it is now on and was not (``before``), and
        take away those of the networks it has left."""
        now = {rec.name for rec, _ in pairs}
        for name in sorted(before - now):
            links.delete_link(endpoint.veth_name(self._store.root_id, container, name))
        for rec, ep in pairs:
            if rec.name not in before:
                prefix = subnets.parse_subnet(rec.subnet).prefixlen
                veth = endpoint.veth_name(self._store.root_id, container, rec.name)
                links.plug(init, veth, rec.bridge, ep.ip, prefix)

    def connect(
        self, network: str, container: str, *, aliases: Sequence[str] = (), ip: str | None = None
    ) -> None:
        """Put ``container`` (made on a network) on ``network`` too, answering
        to its name and ``aliases`` there, at ``ip`` (None: a free address):
        a running one gets an interface there at once (the next ``ethN``), a
        stopped one when it starts. Raises NetworkNotFound, ContainerNotFound,
        SpecError (a bad ``ip``), Conflict (already on it, ``ip`` taken, or
        made with network "none"/"host"), LXCError (the host refused the link)."""
        validate.network_name(network)
        aliases = [validate.hostname(a, "aliases") for a in aliases]

        def change(recs: dict[str, NetworkRecord], meta: dict[str, Any]) -> None:
            ep = self._endpoint(recs, network, meta["key"], aliases, ip)
            ep.owner = None  # the container exists
            rec = recs[network]
            records.save(self._store, rec)
            if rec.dns:
                dns.set_names(rec.bridge, meta["key"], ep.ip, [meta["name"], *aliases])
            meta["networks"][network] = {"ip": ep.ip, "aliases": list(aliases)}

        self._reconfigure(container, change)

    def disconnect(self, network: str, container: str) -> None:
        """Take ``container`` off ``network`` (a running one loses its interface
        there at once); its published ports go with its place there. Raises
        NetworkNotFound, ContainerNotFound, Conflict (not on it)."""
        released: list[str] = []

        def change(recs: dict[str, NetworkRecord], meta: dict[str, Any]) -> None:
            if network not in recs:
                raise NetworkNotFound(f"no network {network!r} in {self._store.root}", name=network)
            ep = recs[network].endpoints.pop(meta["key"], None)
            if ep is None or network not in meta["networks"]:
                raise Conflict(f"container {meta['name']!r} is not on network {network!r}", name=meta["name"])
            if ep.ports:
                released.append(ep.ip)  # (as in release)
            records.save(self._store, recs[network])
            dns.drop_names(recs[network].bridge, meta["key"])
            del meta["networks"][network]
            if ep.ports:
                meta["ports"] = []

        self._reconfigure(container, change)
        conntrack.forget_addresses(released)  # (as in release: its rules are gone now)

    def repair(self, fix: Callable[[str], None], *, repair: bool) -> None:
        """For ``Engine.check()``: see pylxcore.network.repair."""
        from pylxcore.network.repair import repair as run

        run(self, fix, repair=repair)


__all__ = ["DEFAULT_NETWORK", "Network", "NetworkCollection"]
