"""nfnetlink (netfilter's netlink) spoken over the standard library's
``AF_NETLINK`` socket: a request, and the messages that answer it. Used for
the conntrack table (pylxcore.network.conntrack) and to read the nftables
tables (pylxcore.network.nftables) without starting a program or paying
pyroute2's asyncio machinery (~1-30 ms a call) on every container change."""

from __future__ import annotations

import os
import socket
import struct
from typing import Iterator

NETLINK_NETFILTER = 12
REQUEST, ACK, DUMP = 0x1, 0x4, 0x300  # NLM_F_*
_DONE, _ERROR = 3, 2
_HDR = struct.Struct("=LHHLL")  # nlmsghdr
_NFGEN = struct.pack("=BBH", socket.AF_INET, 0, 0)  # nfgenmsg: IPv4 (NFPROTO_IPV4), version 0


def attrs(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(type without flags, payload, the whole attribute) of each netlink attribute in ``data``."""
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            return
        yield kind & 0x3FFF, data[off + 4:off + length], data[off:off + length]
        off += (length + 3) & ~3


class Socket:
    """A netfilter netlink socket in the caller's network namespace. Raises OSError."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> Iterator[bytes]:
        """Send one request; the payloads (after nfgenmsg) of the answers until it is done.
        Raises OSError for an error the kernel answers with."""
        self.seq += 1
        msg = _NFGEN + body
        self.sock.send(_HDR.pack(_HDR.size + len(msg), kind, flags, self.seq, 0) + msg)
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, mflags, seq, _ = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    return
                payload = data[off + _HDR.size:off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if mtype == _DONE:
                    return
                if mtype == _ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return  # (the ACK)
                yield payload[4:]
                if not mflags & 0x2 and not flags & DUMP:  # (not NLM_F_MULTI: one answer)
                    return
