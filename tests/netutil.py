"""Helpers of the network tests: an engine whose networks are removed after
the test (and checked gone), a small web server image, fetching a page, and
what the host's links, nftables and DNS files hold."""

from __future__ import annotations

import subprocess
import urllib.request
from typing import Iterator

import pytest

from pylxcore import Engine, Image
from pylxcore.network import dns, links, netns

WEB = "test/web:1"


def serve(page: str) -> list[str]:
    """A web server's command: busybox httpd serving ``page`` at /."""
    return ["sh", "-c", f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 80 -h /www"]


def build_web(engine: Engine) -> str:
    engine.images.build(Image(WEB, base="busybox", cmd=["sleep", "3600"]))
    return WEB


def fetch(url: str, timeout: float = 3) -> str | None:
    """The body of ``url``, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.read().decode().strip())
    except OSError:
        return None


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def ruleset_outside(prefix: str = "pylxcore_") -> str:
    """The host's whole nft ruleset but the library's tables."""
    out = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    kept, skip = [], False
    for line in out.splitlines():
        if line.startswith("table ") and prefix in line:
            skip = True
        if not skip:
            kept.append(line)
        if skip and line == "}":
            skip = False
    return "\n".join(kept)


def leftovers(engine: Engine) -> list[str]:
    """What of the engine's networks is on the host: its table, bridges, veths
    on them, DNS dirs and dnsmasq processes."""
    nets = engine.networks
    out = []
    if f"table ip {nets.table}" in nft_tables():
        out.append(f"nft table {nets.table}")
    out += [f"link {name}" for name in links.link_names(nets.bridge_prefix)]
    out += [f"network namespace file {name}" for name in netns.names(engine.store.root_id)]
    if netns.ns_dir(engine.store.root_id).exists():
        out.append(f"dir {netns.ns_dir(engine.store.root_id)}")
    if dns.DNS_ROOT.is_dir():
        out += [f"dns dir {d}" for d in dns.DNS_ROOT.iterdir() if d.name.startswith(nets.bridge_prefix)]
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    out += [f"process {p}" for p in procs.splitlines() if "dnsmasq" in p and nets.bridge_prefix in p]
    return out


@pytest.fixture
def net_engine(engine: Engine) -> Iterator[Engine]:
    """``engine``, whose containers and networks are all removed afterwards;
    nothing of them may be left on the host."""
    yield engine
    for c in engine.containers.list(all=True):
        c.remove(force=True)
    engine.networks.prune()
    assert leftovers(engine) == []
