"""A container's place on its networks: its address, names, published
ports, and what that makes of its liblxc config, /etc/hosts and
/etc/resolv.conf. Pure but for the host ports it tries to bind."""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pylxcore.errors import Conflict
from pylxcore.network import dns, netns
from pylxcore.network.attachment import Attachment
from pylxcore.network.records import EndpointRecord, NetworkRecord, Ports
from pylxcore.runtime.lxcconfig import Nic, render_nics


def veth_name(root_id: str, container: str, network: str) -> str:
    """The host side of a container's veth into ``network``: ``pxv`` + 11 hex
    digits (15 characters at most, the kernel's limit)."""
    return "pxv" + hashlib.sha256(f"{root_id}/{container}/{network}".encode()).hexdigest()[:11]


def _clash(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Whether two published ports ([port/proto, host ip, host port]) take the same host port."""
    same_proto = a[0].split("/")[1] == b[0].split("/")[1]
    return same_proto and a[2] == b[2] and (a[1] == b[1] or "0.0.0.0" in (a[1], b[1]))


def _bindable(proto: str, ip: str, port: int) -> bool:
    """Whether a host process could take ``port`` now: if one has, our DNAT
    would steal its traffic (so it is taken)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (TIME_WAIT leftovers are no owner)
        try:
            s.bind((ip, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _free_port(proto: str, ip: str, taken: list[list[Any]]) -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((ip, 0))  # the kernel's pick from its ephemeral range
            port: int = s.getsockname()[1]
        if not any(_clash([f"0/{proto}", ip, port], t) for t in taken):
            return port
    raise Conflict(f"found no free host port for {proto} on {ip}", name=f"{ip}/{proto}")


def allocate_ports(wanted: Iterable[tuple[str, str, int | None]], taken: list[list[Any]]) -> Ports:
    """Host ports for ``wanted`` (from pylxcore.spec.validate.published_ports):
    those given, checked free, or free ones. Raises Conflict (taken by another
    container or a host process)."""
    out: Ports = []
    for cport, ip, hport in wanted:
        proto = cport.split("/")[1]
        if hport is None:
            hport = _free_port(proto, ip, taken + out)
        else:
            entry = [cport, ip, hport]
            for t in taken + out:
                if _clash(entry, t):
                    raise Conflict(
                        f"host port {ip}:{hport}/{proto} is already published", name=f"{hport}/{proto}"
                    )
            if not _bindable(proto, ip, hport):
                raise Conflict(
                    f"host port {ip}:{hport}/{proto} is in use by a process on the host",
                    name=f"{hport}/{proto}",
                )
        out.append([cport, ip, hport])
    return out


def attachment(
    root_id: str,
    files_dir: str,
    container: str,
    hostname: str | None,
    networks: Sequence[tuple[NetworkRecord, EndpointRecord]],
    ports: Ports,
    dns_settings: Mapping[str, Sequence[str]] | None = None,
) -> Attachment:
    """What ``networks`` ((network record, this container's endpoint in it),
    the first the main one) make of container ``container``; ``dns_settings``
    from pylxcore.spec.validate.dns_settings."""
    nics = []
    for rec, ep in networks:
        prefix = ipaddress.ip_network(rec.subnet).prefixlen
        nics.append(
            Nic(
                link=rec.bridge,
                address=f"{ep.ip}/{prefix}",
                gateway=None if rec.internal else rec.gateway,
                pair=veth_name(root_id, container, rec.name),
                netns=str(netns.ns_path(root_id, container)),
            )
        )
    first = networks[0][0] if networks else None
    nameserver = first.gateway if first is not None and first.dns else None
    host = hostname or container[:63]
    return Attachment(
        nics=tuple(nics),
        files_dir=files_dir,
        hostname=hostname,
        hosts=dns.hosts_file(host, [(ep.ip, [container, *ep.aliases]) for _, ep in networks]),
        resolv_conf=dns.resolv_conf(nameserver, dns_settings),
        meta={
            "networks": {
                rec.name: {"ip": ep.ip, "aliases": list(ep.aliases)} for rec, ep in networks
            },
            "ports": ports,
            "hostname": hostname,
            **({"dns": {k: list(v) for k, v in dns_settings.items()}} if dns_settings else {}),
        },
    )


def net_lines(config: str, nics: Sequence[Nic]) -> str:
    """``config`` (a container's liblxc config) with its ``lxc.net.*`` lines
    replaced by those of ``nics`` (no nics: a netns with only loopback)."""
    net_keys = ("lxc.net.", "lxc.namespace.share.net ")
    kept = [line for line in config.splitlines() if not line.startswith(net_keys)]
    own_netns = not any(line.startswith("lxc.idmap ") for line in kept)
    lines = render_nics(nics, own_netns=own_netns) if nics else [("lxc.net.0.type", "empty")]
    return "".join(f"{line}\n" for line in kept) + "".join(f"{k} = {v}\n" for k, v in lines)


def make_namespace(
    root_id: str, container: str, config: Path, networks: Mapping[str, Any], recs: Mapping[str, NetworkRecord]
) -> None:
    """Make container ``container``'s network namespace anew, with a veth
    into each of ``networks`` (its record's: name -> {"ip": …}), when its
    liblxc ``config`` joins one (see pylxcore.network.netns); a config of
    liblxc's veths (a container made before, or in a user namespace) is
    left to liblxc. Raises LXCError."""
    path = netns.ns_path(root_id, container)
    try:
        text = config.read_text()
    except OSError:
        return
    if f"lxc.namespace.share.net = {path}\n" not in text:
        return
    nics = []
    for i, (name, place) in enumerate(networks.items()):
        rec = recs[name]
        nics.append(netns.NsNic(
            host_name=veth_name(root_id, container, name),
            bridge=rec.bridge,
            address=place["ip"],
            prefixlen=ipaddress.ip_network(rec.subnet).prefixlen,
            gateway=None if rec.internal or i else rec.gateway,  # (as in attachment())
        ))
    netns.make(path, nics)
