"""Netlink over the standard library's ``AF_NETLINK`` socket: the message
header, attributes, and a request with the messages that answer it. The
one codec under pylxcore.network.rtnetlink (links, addresses, routes) and
pylxcore.network.nfnetlink (conntrack, nftables): pyroute2 costs a
millisecond or more a call of its own machinery, on paths every container
change takes.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Iterator

REQUEST, MULTI, ACK, DUMP = 0x1, 0x2, 0x4, 0x300  # NLM_F_*
_ERROR, _DONE = 2, 3  # NLMSG_*
_HDR = struct.Struct("=LHHLL")  # nlmsghdr: length, type, flags, sequence, port


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def attrs(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(type without flags, payload, the whole attribute) of each netlink attribute in ``data``."""
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            return
        yield kind & 0x3FFF, data[off + 4 : off + length], data[off : off + length]
        off += (length + 3) & ~3


class Socket:
    """A netlink socket of ``protocol`` in the network namespace of the
    thread that made it (it stays there), read ``recv_size`` bytes at a time.
    Raises OSError."""

    def __init__(self, protocol: int, recv_size: int = 65536) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.bind((0, 0))
        self.seq = 0
        self.recv_size = recv_size

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> Iterator[bytes]:
        """Send one request; the payloads (after the header) of the answers,
        until it is done: a dump's end, the acknowledgement (with ACK in
        ``flags``), else the one answer. Raises OSError with the errno the
        kernel answered."""
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags, self.seq, 0) + body)
        while True:
            data = self.sock.recv(self.recv_size)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, mflags, seq, _ = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    return
                payload = data[off + _HDR.size : off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue  # (an answer to an earlier request)
                if mtype == _DONE:
                    return
                if mtype == _ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return  # (the acknowledgement)
                yield payload
                if not mflags & MULTI and not flags & (DUMP | ACK):
                    return
