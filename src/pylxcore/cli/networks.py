"""``network …`` (create, ls, rm, inspect, connect, disconnect, prune), ``port``,
and ``run``'s ``-p``/``-P``."""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from pylxcore.cli.output import EXIT_OK, each, print_json_lines, table
from pylxcore.engine import Engine
from pylxcore.errors import SpecError


def _port_range(text: str, item: str) -> list[int]:
    """``80`` or ``8000-8002``: the ports, in order (the library checks each is a port)."""
    first, dash, last = text.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()) or (dash and int(last) < int(first)):
        raise SpecError(f"bad -p {item!r}: expected [IP:][HOSTPORT[-END]:]PORT[-END][/udp]", key="publish")
    return list(range(int(first), int(last) + 1)) if dash else [int(first)]


def parse_publish(items: Sequence[str]) -> dict[str, list[Any]]:
    """``-p`` values as ``run(ports=...)`` takes them: ``8080:80``,
    ``127.0.0.1:8080:80``, ``127.0.0.1::80`` and ``80`` (a free host port),
    each optionally ``/udp``; and ranges, as docker's: ``8000-8002:80-82``
    (port by port, the two ranges of one length) and ``80-82`` (each on a
    free host port). The library checks the numbers and addresses."""
    ports: dict[str, list[Any]] = {}
    for item in items:
        spec, _, proto = item.partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            ip, host, cport = "", "", parts[0]
        elif len(parts) == 2:
            ip, (host, cport) = "", parts
        else:
            ip, host, cport = parts
        cports = _port_range(cport, item)
        hports: list[int | None] = list(_port_range(host, item)) if host else [None] * len(cports)
        if len(hports) != len(cports):
            raise SpecError(
                f"bad -p {item!r}: the host range and the container range must have as many ports",
                key="publish",
            )
        for c, hport in zip(cports, hports):
            binding: Any = (ip, hport) if ip else hport
            ports.setdefault(f"{c}/{proto or 'tcp'}", []).append(binding)
    return ports


def publish_options(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    """``run``'s network options as its keyword arguments."""
    ports = parse_publish(args.publish)
    if args.publish_all:
        for port in engine.images.get(args.image).config.exposed_ports:
            ports.setdefault(port, []).append(None)
    options: dict[str, Any] = {
        "network": args.network, "hostname": args.hostname, "aliases": args.network_alias,
    }
    if getattr(args, "ip", None) is not None:
        options["ip"] = args.ip
    for flag, kwarg in (("dns", "dns"), ("dns_search", "dns_search"), ("dns_option", "dns_opt")):
        if getattr(args, flag, None):
            options[kwarg] = list(getattr(args, flag))
    if ports:
        options["ports"] = ports
    return options


def cmd_network(args: argparse.Namespace) -> int:
    """``network SUBCOMMAND``."""
    engine = Engine(root=args.root)
    nets = engine.networks
    sub = args.network_command
    if sub == "create":
        net = nets.create(args.name, subnet=args.subnet, internal=args.internal)
        print(net.name)
    elif sub == "ls":
        rows = [n.inspect() for n in nets.list()]
        if args.quiet:
            for row in rows:
                print(row["name"])
        elif args.format == "json":
            print_json_lines(rows)
        else:
            cells = [
                (r["id"][:12], r["name"], r["subnet"], "yes" if r["internal"] else "no",
                 str(len(r["containers"])))
                for r in rows
            ]
            print(table(("NETWORK ID", "NAME", "SUBNET", "INTERNAL", "CONTAINERS"), cells))
    elif sub == "rm":
        return each(args, nets.remove)
    elif sub == "inspect":
        print(json.dumps([nets.get(n).inspect() for n in args.names], indent=2))
    elif sub == "connect":
        nets.connect(args.network, args.container, aliases=args.alias, ip=args.ip)
    elif sub == "disconnect":
        nets.disconnect(args.network, args.container)
    elif sub == "prune":
        for name in nets.prune():
            print(name)
    return EXIT_OK


def cmd_port(args: argparse.Namespace) -> int:
    """``port NAME [PORT[/PROTO]]``: where a container's ports are published, as ``docker port``."""
    container = Engine(root=args.root).containers.get(args.name)
    want = None
    if args.port:
        want = args.port if "/" in args.port else f"{args.port}/tcp"
    for cport, bindings in sorted(container.ports.items()):
        if want is not None and cport != want:
            continue
        for ip, port in bindings:
            print(f"{ip}:{port}" if want else f"{cport} -> {ip}:{port}")
    return EXIT_OK
