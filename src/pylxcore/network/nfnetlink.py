"""nfnetlink (netfilter's netlink) spoken over the standard library's
``AF_NETLINK`` socket: a request, and the messages that answer it. Used for
the conntrack table (pylxcore.network.conntrack) and to read the nftables
tables (pylxcore.network.nftables) without starting a program or paying
pyroute2's asyncio machinery (~1-30 ms a call) on every container change."""

from __future__ import annotations

import socket
import struct
from typing import Iterator

from pylxcore.network import netlink

NETLINK_NETFILTER = 12
_NFGEN = struct.pack("=BBH", socket.AF_INET, 0, 0)  # nfgenmsg: IPv4 (NFPROTO_IPV4), version 0


class Socket(netlink.Socket):
    """A netfilter netlink socket in the caller's network namespace. Raises OSError."""

    def __init__(self) -> None:
        super().__init__(NETLINK_NETFILTER, 1 << 20)  # (a dump of a big conntrack table)

    def request(self, kind: int, flags: int, body: bytes) -> Iterator[bytes]:
        """Send one request; the payloads (after nfgenmsg) of the answers until it is done.
        Raises OSError for an error the kernel answers with."""
        for payload in super().request(kind, flags, _NFGEN + body):
            yield payload[4:]
