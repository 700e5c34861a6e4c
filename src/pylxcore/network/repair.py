"""``Engine.check()``'s part for networks: remove what no record accounts for.

A process killed while it made or removed a container or network can leave
an endpoint (an address, ports) of a container that was never made or is
gone, its DNS name, its veth, a bridge or DNS server of a network whose
record is gone, or rules that no longer match the records. The records are
the truth (see pylxcore.network.collection): this makes the host match them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pylxcore.errors import StorageError
from pylxcore.network import conntrack, dns, endpoint, links, netns, nftables, records
from pylxcore.procs import process_start_time
from pylxcore.runtime.state import StateRecord
from pylxcore.store import owner_alive, rmtree
from pylxcore.supervisor.state import STATE_FILE

if TYPE_CHECKING:
    from pylxcore.network.collection import NetworkCollection


def repair(networks: NetworkCollection, fix: Callable[[str], None], *, repair: bool) -> None:
    """Find what no record accounts for and, with ``repair``, remove it;
    ``fix(what)`` is called for each. Raises LXCError (the host refused)."""
    store = networks.store
    prefix = networks.bridge_prefix
    with records.locked(store):
        recs = records.load_all(store)
        for rec in recs.values():
            for c, ep in rec.endpoints.items():
                if records.stale(store, c, ep):
                    fix(f"released address {ep.ip} of gone container {c} on network {rec.name}")
            # Made, but its maker died before it said so: the container holds it now.
            done = [
                c for c, ep in rec.endpoints.items()
                if ep.owner and not owner_alive(ep.owner)
                and (store.containers_dir / c / "meta.json").exists()
            ]
            for c in done:
                fix(f"handed address {rec.endpoints[c].ip} on network {rec.name} to container {c}")
                if repair:
                    rec.endpoints[c].owner = None
            if done and repair:
                records.save(store, rec)
        if repair:
            for item in records.sweep(store, recs):
                net, container = item.split("/", 1)
                dns.drop_names(recs[net].bridge, container)
        files = records.networks_dir(store) / "files"
        held = {c for r in recs.values() for c in r.endpoints}
        for d in sorted(files.iterdir()) if files.is_dir() else []:
            if d.name not in held and not (store.containers_dir / d.name / "meta.json").exists():
                fix(f"removed the hosts and resolv.conf of gone container {d.name}")
                if repair:
                    rmtree(d)
        # A namespace file outlives its use only when a process was killed
        # between making it and starting the container, or between removing
        # the container and dropping it (see pylxcore.network.netns): its
        # veths go with it, and the next start makes it anew.
        kept = False  # (a namespace file left by a dry run: its veths stay, no use waiting for them)
        for c in netns.names(store.root_id):
            if c not in held and not (store.containers_dir / c / "meta.json").exists():
                fix(f"dropped the network namespace of gone container {c}")
            elif not _supervised(store.containers_dir / c):
                fix(f"dropped the network namespace of container {c}, which is not running")
            else:
                continue
            kept = not repair
            if repair:
                netns.drop(netns.ns_path(store.root_id, c))
        bridges = {r.bridge for r in recs.values()}
        for rec in recs.values():
            veths = {endpoint.veth_name(store.root_id, c, rec.name) for c in rec.endpoints}
            for port in _orphan_ports(rec.bridge, veths, 0.0 if kept else 2.0):
                fix(f"deleted veth {port} of a gone container on network {rec.name}")
                if repair:
                    links.delete_link(port)
            for c in dns.named(rec.bridge):
                if c not in rec.endpoints:
                    fix(f"dropped the DNS name of gone container {c} on network {rec.name}")
                    if repair:
                        dns.drop_names(rec.bridge, c)
        for br in links.link_names(prefix):
            if br not in bridges:
                fix(f"deleted bridge {br} of a network that is gone")
                if repair:
                    links.delete_link(br)
        if dns.DNS_ROOT.is_dir():
            for d in sorted(dns.DNS_ROOT.iterdir()):
                if d.name.startswith(prefix) and d.name not in bridges:
                    fix(f"stopped the DNS server of a network that is gone ({d.name})")
                    if repair:
                        _stop_orphan_dns(d.name)
        # Connections of addresses no container holds (its maker was killed
        # before it forgot them): the kernel would hand them to the next holder.
        allocated = [ep.ip for r in recs.values() for ep in r.endpoints.values()]
        subnets = [r.subnet for r in recs.values()]
        strays = conntrack.forget_strays(subnets, allocated, dry_run=True)
        if strays:
            fix(f"forgot {strays} tracked connection(s) of addresses no container holds")
            if repair:
                conntrack.forget_strays(subnets, allocated)
        table = networks.table
        if (nftables.listing(table) is None) == bool(recs):
            fix(f"{'made' if recs else 'deleted'} nftables table {table} to match the network records")
        if repair:
            # Whole and atomic (forced: its comment may say so, but rules in it
            # may have drifted from the records); the same rules again change nothing.
            nftables.apply(table, recs.values(), force=True)


def _supervised(ctrdir: Path) -> bool:
    """Whether the container in ``ctrdir`` has a live supervisor (it runs, or
    its restart policy starts it again)."""
    try:
        state = StateRecord.read(ctrdir / STATE_FILE)
    except (OSError, StorageError):
        return False
    return state is not None and state.supervisor_alive()


def _orphan_ports(bridge: str, veths: set[str], wait: float) -> list[str]:
    """The ports of ``bridge`` not in ``veths``, once the kernel has had up
    to ``wait`` seconds to tear down the namespaces of containers just
    removed: it deletes their veths in the background (see
    pylxcore.network.netns), which is no leak."""
    deadline = time.monotonic() + wait
    while True:
        orphans = [p for p in links.ports_of(bridge) if p not in veths]
        if not orphans or time.monotonic() > deadline:
            return orphans
        time.sleep(0.05)


def _stop_orphan_dns(bridge: str) -> None:
    try:
        pid = int((dns.dns_dir(bridge) / "pid").read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if pid:
        dns.stop(pid, process_start_time(pid))  # (stop() signals only a dnsmasq)
    dns.remove_files(bridge)
