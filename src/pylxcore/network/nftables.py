"""The library's one nftables table: NAT out, published ports, isolation.

Everything is in one table of our own (``ip pylxcore_<root id>``), rendered
whole from the network records and loaded with ``nft -f``: a table made
empty, deleted and made again in one transaction, so the kernel switches
from the old rules to the new ones atomically and nothing else on the host
(other tables, chains, or the host's own rules) is read or touched.

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

import subprocess
from typing import Iterable

from pylxcore.errors import LXCError
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


def _nft(script: str) -> None:
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


def apply(table: str, networks: Iterable[NetworkRecord]) -> None:
    """Replace the table with the rules for ``networks`` in one transaction
    (no networks: the table is deleted). Raises LXCError."""
    nets = list(networks)
    script = f"table ip {table} {{}}\ndelete table ip {table}\n"
    if nets:
        script += render(table, nets)
    _nft(script)


def listing(table: str) -> str | None:
    """``nft list table`` of the table, or None when there is none."""
    proc = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else None
