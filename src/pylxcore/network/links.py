"""The host's links, through netlink: our bridges, and what the host routes.

Netlink through pyroute2 (PyPI), not by running ``ip``: pyroute2 is pure
Python, well kept (used by OpenStack Neutron and others), answers with
structured data instead of text to parse, and reports failures as errno
values, so "already exists" and "no such device" are told apart without
reading messages meant for people. Only links this library made are ever
changed: bridges named ``pxb…`` (see pylxcore.network.collection), made and
deleted by name, and their sysctls under ``/proc/sys/net/ipv4/conf/<bridge>``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import socket
import struct
from typing import Any

from pylxcore.errors import LXCError

IPv4Network = ipaddress.IPv4Network
_SIOCGIFADDR, _SIOCGIFNETMASK = 0x8915, 0x891B


def _ipr() -> Any:
    from pyroute2 import IPRoute  # (deferred: ~40 ms, and only networks need it)

    return IPRoute()


def _fail(what: str, err: Exception) -> LXCError:
    return LXCError(f"cannot {what}: {err}", operation="network", detail=str(err))


def host_subnets() -> list[IPv4Network]:
    """Every IPv4 subnet the host has an address in or a route to (the default
    route aside), in the host's network namespace."""
    out: set[IPv4Network] = set()
    with _ipr() as ipr:
        for a in ipr.get_addr(family=2):
            out.add(IPv4Network(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}", strict=False))
        for r in ipr.get_routes(family=2, table=254):
            if r["dst_len"] > 0 and r.get("RTA_DST"):
                out.add(IPv4Network(f"{r.get('RTA_DST')}/{r['dst_len']}", strict=False))
    return sorted(out)


def link_names(prefix: str = "") -> list[str]:
    """The names of the host's links that start with ``prefix``."""
    with _ipr() as ipr:
        names = [link.get("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))


def _sysctl(bridge: str, key: str, value: str) -> None:
    with open(f"/proc/sys/net/ipv4/conf/{bridge}/{key}", "w") as fh:
        fh.write(value)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def _is_set_up(name: str, address: str, prefixlen: int) -> bool:
    """Whether bridge ``name`` is as ``ensure_bridge`` leaves it: up, with
    its sysctls and ``address/prefixlen``."""
    try:
        if not int(_read(f"/sys/class/net/{name}/flags"), 16) & 1:  # IFF_UP
            return False
        conf = f"/proc/sys/net/ipv4/conf/{name}"
        if _read(f"{conf}/forwarding") != "1" or _read(f"{conf}/route_localnet") != "1":
            return False
        if _read(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6") != "1":
            return False
    except (OSError, ValueError):
        return False
    # Its (first) IPv4 address and netmask by ioctl: microseconds, where a
    # netlink round trip through pyroute2 costs a millisecond or two.
    ifreq = struct.pack("256s", name.encode())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            addr = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, ifreq)[20:24]
            mask = fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, ifreq)[20:24]
    except OSError:  # (EADDRNOTAVAIL: it has none)
        return False
    return socket.inet_ntoa(addr) == address and int.from_bytes(mask, "big").bit_count() == prefixlen


def ensure_bridge(name: str, address: str, prefixlen: int) -> None:
    """Make bridge ``name`` with ``address/prefixlen`` and bring it up, unless
    it is there already. Sets, on this bridge only: ``forwarding`` (its
    containers' traffic may be routed on) and ``route_localnet`` (so that a
    port published on 127.0.0.1 can be DNATed to a container; the nftables
    table drops what containers send to 127.0.0.0/8 through it). Raises LXCError."""
    if _is_set_up(name, address, prefixlen):
        return  # (as it is before every start: a few reads instead of netlink changes)
    try:
        with _ipr() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                try:
                    # A MAC of its own (locally administered, from its name): without
                    # one the bridge takes its lowest port's, and changes it when a
                    # container joins; its containers' ARP entries for the gateway
                    # (their DNS server) then point nowhere for ~30 s.
                    mac = ":".join(["02", *(f"{b:02x}" for b in hashlib.sha256(name.encode()).digest()[:5])])
                    ipr.link("add", ifname=name, kind="bridge", address=mac)
                except Exception as err:
                    if getattr(err, "code", None) != errno.EEXIST:
                        raise
                found = ipr.link_lookup(ifname=name)
            index = found[0]
            have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(family=2, index=index)}
            if (address, prefixlen) not in have:
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
        _sysctl(name, "forwarding", "1")
        _sysctl(name, "route_localnet", "1")
        # No IPv6 on it: the library's networks are IPv4 only, and a link-local
        # address would only make the bridge answer on a protocol nobody set up.
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as fh:
            fh.write("1")
    except LXCError:
        raise
    except Exception as err:
        raise _fail(f"set up bridge {name}", err) from err


def delete_link(name: str) -> bool:
    """Delete link ``name`` if it exists; whether it did. Raises LXCError."""
    try:
        with _ipr() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                return False
            ipr.link("del", index=found[0])
            return True
    except Exception as err:
        if getattr(err, "code", None) == errno.ENODEV:
            return False
        raise _fail(f"delete link {name}", err) from err


def ports_of(bridge: str) -> list[str]:
    """The names of the links enslaved to ``bridge`` (its containers' veths)."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return []
        return sorted(
            link.get("IFLA_IFNAME") for link in ipr.get_links() if link.get("IFLA_MASTER") == found[0]
        )


def plug(pid: int, host_name: str, bridge: str, address: str, prefixlen: int) -> str:
    """A veth from ``bridge`` (host side ``host_name``) into the network
    namespace of process ``pid`` (a running container's init): its end
    there gets the lowest free ``ethN`` name, ``address/prefixlen``, and is
    brought up. Returns that name. Raises LXCError (nothing is left then)."""
    from pyroute2 import NetNS

    peer = host_name[:14] + "p"  # (a name of its own until it is in the container)
    try:
        with _ipr() as ipr:
            ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer, "net_ns_pid": pid})
            (index,) = ipr.link_lookup(ifname=host_name)
            (master,) = ipr.link_lookup(ifname=bridge)
            ipr.link("set", index=index, master=master, state="up")
        with NetNS(f"/proc/{pid}/ns/net") as ns:
            names = {link.get("IFLA_IFNAME") for link in ns.get_links()}
            name = next(f"eth{i}" for i in range(1000) if f"eth{i}" not in names)
            (inner,) = ns.link_lookup(ifname=peer)
            ns.link("set", index=inner, ifname=name)
            ns.addr("add", index=inner, address=address, prefixlen=prefixlen)
            ns.link("set", index=inner, state="up")
        return name
    except Exception as err:  # (pyroute2's NetlinkError and kin)
        delete_link(host_name)  # (its peer goes with it)
        raise _fail(f"connect process {pid}'s network namespace to bridge {bridge}", err) from err
