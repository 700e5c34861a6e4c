"""Routing netlink (rtnetlink) spoken over the standard library's
``AF_NETLINK`` socket: the few requests that plug a container's network
namespace into a bridge (pylxcore.network.netns). Each costs a few
microseconds of the kernel's time; pyroute2 (pylxcore.network.links) costs a
millisecond or more a call of its own machinery, which on the path of every
networked ``run`` adds up. The messages are those of ``ip link add … type
veth peer …``, ``ip addr add`` and ``ip route add default via …``.
"""

from __future__ import annotations

import errno
import socket
import struct

from pylxcore.network import netlink
from pylxcore.network.netlink import attr

NETLINK_ROUTE = 0
EXCL, CREATE = 0x200, 0x400  # NLM_F_*
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
IFF_UP = 0x1
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 1, 3, 10, 18, 28
_INFO_KIND, _INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_GATEWAY, _RTA_OIF = 5, 4
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
# rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


class Socket(netlink.Socket):
    """A routing netlink socket in the network namespace of the thread that
    made it (it stays there). Raises OSError."""

    def __init__(self) -> None:
        super().__init__(NETLINK_ROUTE)

    def __enter__(self) -> Socket:
        return self

    def call(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement. Raises OSError
        with the errno the kernel answered."""
        for _ in self.request(kind, flags | netlink.REQUEST | netlink.ACK, body):
            pass

    def add_veth(
        self, name: str, master: int, mac: bytes, peer: str, peer_index: int, peer_ns_fd: int
    ) -> None:
        """A veth ``name`` here, up, a port of bridge ``master`` (an ifindex),
        with MAC ``mac``; its peer ``peer``, down, made in the network namespace
        ``peer_ns_fd`` with ifindex ``peer_index`` there (the kernel refuses to
        bring it up in the same request: ENOTCONN)."""
        peer_msg = _IFINFO.pack(0, 0, peer_index, 0, 0) + attr(_IFLA_IFNAME, _name(peer))
        peer_msg += attr(_IFLA_NET_NS_FD, struct.pack("=I", peer_ns_fd))
        info = attr(_INFO_KIND, b"veth\0") + attr(_INFO_DATA, attr(_VETH_INFO_PEER, peer_msg))
        body = _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP) + attr(_IFLA_IFNAME, _name(name))
        body += attr(_IFLA_ADDRESS, mac) + attr(_IFLA_MASTER, struct.pack("=I", master))
        body += attr(_IFLA_LINKINFO, info)
        self.call(RTM_NEWLINK, CREATE | EXCL, body)

    def delete_link(self, name: str) -> None:
        """Delete link ``name`` (a veth: its peer goes with it); nothing when
        there is none."""
        try:
            self.call(RTM_DELLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + attr(_IFLA_IFNAME, _name(name)))
        except OSError as err:
            if err.errno != errno.ENODEV:
                raise

    def set_up(self, index: int) -> None:
        """Bring link ``index`` up."""
        self.call(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP))

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """IPv4 ``address/prefixlen`` on link ``index``."""
        ip = socket.inet_aton(address)
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
        body += attr(_IFA_LOCAL, ip) + attr(_IFA_ADDRESS, ip)
        self.call(RTM_NEWADDR, CREATE | EXCL, body)

    def add_default_route(self, index: int, gateway: str) -> None:
        """The IPv4 default route, through ``gateway`` on link ``index``."""
        # main table (254), "boot" protocol (3, as ip route add), universe scope, unicast
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
        body += attr(_RTA_GATEWAY, socket.inet_aton(gateway)) + attr(_RTA_OIF, struct.pack("=I", index))
        self.call(RTM_NEWROUTE, CREATE | EXCL, body)
