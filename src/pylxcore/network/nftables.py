"""The library's one nftables table: NAT out, published ports, isolation.

Everything is in one table of our own (``ip pylxcore_<root id>``), rendered
whole from the network records and loaded as ``nft -f`` would (through
libnftables, else the nft program): a table made empty, deleted and made
again in one transaction, so the kernel switches from the old rules to the
new ones atomically and nothing else on the host (other tables, chains, or
the host's own rules) is read or touched. Its comment carries a digest of
its rules: the same rules are not loaded again (see ``apply``).

What the rules do, for each of our bridges ``B`` with subnet ``S``:

- published ports: packets to a host address (``fib daddr type local``:
  the host's addresses, 127.0.0.1, our gateways) on a published port are
  DNATed to the container, in prerouting (from outside and from containers:
  hairpin) and output (from the host itself);
- packets from 127.0.0.0/8 DNATed out through ``B`` are masqueraded (the
  container could not answer 127.0.0.1), as is hairpin traffic that comes
  back into ``S`` (else the reply would bypass the host and its NAT);
- ``S`` is masqueraded on its way out, unless the network is internal;
- forward: an internal network's bridge sends nothing out and takes nothing
  in; no bridge forwards to another ``pxb…`` bridge but for a published port;
- input: what a container sends to 127.0.0.0/8 through ``B`` (which
  ``route_localnet`` would let through) is dropped, unless it answers a
  DNATed connection.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from typing import Any, Iterable

from pylxcore.errors import LXCError
from pylxcore.network import netlink, nfnetlink
from pylxcore.network.records import NetworkRecord

BRIDGE_WILDCARD = '"pxb*"'  # every pylxcore bridge, of any root


def table_name(root_id: str) -> str:
    return f"pylxcore_{root_id}"


def render(table: str, networks: Iterable[NetworkRecord]) -> str:
    """The table's text for ``networks`` (their records, endpoints included)."""
    nets = sorted(networks, key=lambda r: r.name)
    published: list[str] = []
    post: list[str] = []
    forward: list[str] = []
    bridges = ", ".join(f'"{n.bridge}"' for n in nets)
    for n in nets:
        br, subnet = f'"{n.bridge}"', n.subnet
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        post.append(f"oifname {br} ip saddr {subnet} ct status dnat masquerade")
        if n.internal:
            forward.append(f"iifname {br} oifname != {br} drop")
            forward.append(f"oifname {br} iifname != {br} drop")
        else:
            post.append(f"ip saddr {subnet} oifname != {br} masquerade")
            forward.append(f"iifname {br} oifname != {br} oifname {BRIDGE_WILDCARD} ct status != dnat drop")
        for _, ep in sorted(n.endpoints.items()):
            for cport, host_ip, host_port in ep.ports:
                port, proto = cport.split("/")
                match = "" if host_ip == "0.0.0.0" else f"ip daddr {host_ip} "
                published.append(f"{match}{proto} dport {host_port} dnat to {ep.ip}:{port}")
    lines = [f"table ip {table} {{"]

    def chain(name: str, hook: str | None, rules: list[str]) -> None:
        lines.append(f"\tchain {name} {{")
        if hook:
            lines.append(f"\t\t{hook}; policy accept;")
        lines.extend(f"\t\t{r}" for r in rules)
        lines.append("\t}")

    chain("published", None, published)
    chain("prerouting", "type nat hook prerouting priority dstnat", ["fib daddr type local jump published"])
    chain("output", "type nat hook output priority -100", ["fib daddr type local jump published"])
    chain("postrouting", "type nat hook postrouting priority srcnat", post)
    chain("forward", "type filter hook forward priority filter", forward)
    guard = [] if not nets else [
        f"iifname {{ {bridges} }} ip daddr 127.0.0.0/8 ct status dnat accept",
        f"iifname {{ {bridges} }} ip daddr 127.0.0.0/8 drop",
    ]
    chain("input", "type filter hook input priority filter", guard)
    lines.append("}")
    return "\n".join(lines) + "\n"


@functools.cache
def _libnftables() -> Any:
    """libnftables (what the nft program is made of; Debian's libnftables1,
    which nft depends on) through ctypes, or None without it."""
    import ctypes

    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


def _nft(script: str) -> None:
    # In this process through libnftables when it loads: the same parser and
    # kernel transaction as ``nft -f``, without starting a program (5-10 ms
    # of every change on a busy host).
    lib = _libnftables()
    if lib is not None:
        ctx = lib.nft_ctx_new(0)
        if ctx:
            try:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                code = lib.nft_run_cmd_from_buffer(ctx, script.encode())
                error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            finally:
                lib.nft_ctx_free(ctx)
            if code != 0:
                raise LXCError(
                    f"nft refused the rules of pylxcore's table: {error.strip()}",
                    operation="network",
                    detail=error,
                )
            return
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LXCError(
            "cannot program networks: the nft program is missing (Debian package nftables)",
            operation="network",
        ) from None
    if proc.returncode != 0:
        raise LXCError(
            f"nft refused the rules of pylxcore's table: {proc.stderr.strip()}",
            operation="network",
            detail=proc.stderr,
        )


def _stamp(text: str) -> str:
    """What the table's comment says of the rules it was made with."""
    return "pylxcore:" + hashlib.sha256(text.encode()).hexdigest()[:32]


_GETTABLE = (10 << 8) | 1  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE
_TABLE_NAME, _TABLE_USERDATA = 1, 6  # NFTA_TABLE_*


def _loaded() -> dict[str, bytes] | None:
    """The kernel's ``ip`` tables: name → their user data (where nft keeps a
    table's comment), read through netlink (no process, no commit); None when
    they cannot be read."""
    try:
        nl = nfnetlink.Socket()
    except OSError:
        return None
    try:
        out = {}
        for payload in nl.request(_GETTABLE, netlink.REQUEST | netlink.DUMP, b""):
            fields = {kind: value for kind, value, _ in netlink.attrs(payload)}
            out[fields.get(_TABLE_NAME, b"").rstrip(b"\0").decode(errors="replace")] = fields.get(
                _TABLE_USERDATA, b""
            )
        return out
    except OSError:
        return None
    finally:
        nl.close()


def apply(table: str, networks: Iterable[NetworkRecord], *, force: bool = False) -> None:
    """Replace the table with the rules for ``networks`` in one transaction
    (no networks: the table is deleted). The table carries a digest of its
    rules in its comment: when the kernel's table has the same already, the
    rules are not loaded again (a commit costs ~15-25 ms, and most changes to
    the records, such as a container without published ports coming or
    going, change no rule), unless ``force``. Raises LXCError."""
    nets = list(networks)
    text = render(table, nets) if nets else ""
    stamp = _stamp(text)
    if not force:
        loaded = _loaded()
        if loaded is not None and (stamp.encode() in loaded.get(table, b"") if nets else table not in loaded):
            return
    script = f"table ip {table} {{}}\ndelete table ip {table}\n"
    if nets:
        script += text.replace(f"table ip {table} {{\n", f'table ip {table} {{\n\tcomment "{stamp}"\n', 1)
    _nft(script)


def listing(table: str) -> str | None:
    """``nft list table`` of the table, or None when there is none."""
    proc = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else None
