"""Networks under churn and crashes: nothing leaks, ``check()`` makes the
host match the records after a SIGKILL at any point."""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from pylxcore import Engine
from pylxcore.network import conntrack, dns, endpoint, links, netns, nftables, records
from tests.conftest import until
from tests.netutil import build_web, net_engine, ruleset_outside

__all__ = ["net_engine"]  # (the fixture, imported to be found)


def _dnat_rules(engine: Engine) -> list[str]:
    return re.findall(r"dnat to \S+", nftables.listing(engine.networks.table) or "")


def _assert_consistent(engine: Engine, network: str) -> None:
    """The record of ``network`` holds exactly the containers that exist on
    it, and the rules, DNS names and veths are exactly theirs."""
    rec = records.load(engine.store, network)
    on_it = {c.name for c in engine.containers.list(all=True) if network in c.inspect()["networks"]}
    assert set(rec.endpoints) == on_it
    assert all(ep.owner is None for ep in rec.endpoints.values())
    assert len(_dnat_rules(engine)) == sum(len(ep.ports) for ep in rec.endpoints.values())
    assert dns.named(rec.bridge) == sorted(on_it)
    running = {endpoint.veth_name(engine.store.root_id, c.name, network)
               for c in engine.containers.list() if c.name in on_it}
    # (The veths of containers just removed go with their namespaces, which
    # the kernel tears down in the background: see pylxcore.network.netns.)
    until(lambda: set(links.ports_of(rec.bridge)) <= running, 10, "the veths of removed containers gone")
    assert set(netns.names(engine.store.root_id)) <= on_it
    ips = [ep.ip for ep in rec.endpoints.values()]
    assert len(ips) == len(set(ips))
    assert conntrack.forget_strays([rec.subnet], ips, dry_run=True) == 0


def _tracked(ip: str) -> int:
    """How many of the host's conntrack entries name ``ip``."""
    return conntrack.forget_addresses([ip], dry_run=True)


CYCLES = 500


@pytest.mark.slow
def test_500_run_remove_cycles_leak_nothing(net_engine: Engine) -> None:
    # Each container publishes a port of each protocol and is sent a datagram
    # through one (a conntrack entry, DNATed to it), then removed; nothing of
    # it may be left: veth, address, rules, DNS name, tracked connection.
    engine = net_engine
    image = build_web(engine)
    before = ruleset_outside()
    veths_before = set(links.link_names("pxv"))
    net = engine.networks.create("cycle")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(CYCLES):
        c = engine.containers.run(image, name=f"cyc{i}", detach=True, network="cycle", aliases=["a"],
                                  ports={"80/tcp": None, "53/udp": None})
        ((_, udp),) = c.ports["53/udp"]
        sock.sendto(b"ping", ("127.0.0.1", udp))
        if i % 50 == 0:
            assert c.ip_address is not None
            assert _tracked(c.ip_address) >= 1  # (so that the check below can fail)
            assert len(_dnat_rules(engine)) == 2
            assert dns.named(net.bridge) == [c.name]
            mine = [endpoint.veth_name(engine.store.root_id, c.name, "cycle")]
            until(lambda mine=mine: links.ports_of(net.bridge) == mine, 10, "only this container's veth")
            assert netns.names(engine.store.root_id) == []  # (its processes hold its namespace now)
        c.remove(force=True)
        if i % 50 == 0:
            assert _tracked(c.ip_address) == 0
    sock.close()
    assert records.load(engine.store, "cycle").endpoints == {}
    assert _dnat_rules(engine) == []
    assert dns.named(net.bridge) == []
    until(lambda: links.ports_of(net.bridge) == [], 10, "no veth on the bridge")
    until(lambda: set(links.link_names("pxv")) <= veths_before, 10, "no veth left")
    assert netns.names(engine.store.root_id) == []
    assert conntrack.forget_strays([net.subnet], [], dry_run=True) == 0
    assert engine.check().consistent
    engine.networks.remove("cycle")
    assert ruleset_outside() == before


CHURN = """
import sys
from pylxcore import Engine
engine = Engine(root=sys.argv[1])
i = 0
while True:
    c = engine.containers.run(sys.argv[2], name=f"churn{sys.argv[3]}-{i}", detach=True, network="crash",
                              ports={"80/tcp": None})
    print("made", flush=True)
    c.remove(force=True)
    print("removed", flush=True)
    i += 1
"""

GHOST = """
import os, signal, socket, sys
from pylxcore import Engine
engine = Engine(root=sys.argv[1])
att = engine.networks.attach("ghost", "crash", ports={"80/tcp": None, "53/udp": None}, aliases=["boo"])
# A datagram through its published port: a tracked connection, DNATed to its address.
(udp,) = [hport for cport, _, hport in att.meta["ports"] if cport == "53/udp"]
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"boo", ("127.0.0.1", udp))
os.kill(os.getpid(), signal.SIGKILL)  # before the container is made
"""


@pytest.mark.slow
def test_sigkill_during_create_and_remove_then_check(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    engine.networks.create("crash")
    # Killed between allocating and making the container: check() gives it all back.
    subprocess.run([sys.executable, "-c", GHOST, str(engine.root)], check=False, timeout=60)
    rec = records.load(engine.store, "crash")
    assert "ghost" in rec.endpoints and dns.named(rec.bridge) == ["ghost"]
    assert len(_dnat_rules(engine)) == 2
    ghost_ip = rec.endpoints["ghost"].ip
    assert _tracked(ghost_ip) >= 1
    report = engine.check()
    assert any("ghost" in r for r in report.repaired), report
    assert any("tracked connection" in r for r in report.repaired), report
    assert _tracked(ghost_ip) == 0
    _assert_consistent(engine, "crash")
    # Killed at a random point while containers are made and removed.
    rng = random.Random(7)
    for k in range(4):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(engine.root), image, str(k)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline()  # it has made one container: now kill it somewhere
        time.sleep(rng.uniform(0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        report = engine.check()
        _assert_consistent(engine, "crash")
        assert engine.check(repair=False).consistent
    for c in engine.containers.list(all=True):
        c.remove(force=True)
    _assert_consistent(engine, "crash")
    assert _dnat_rules(engine) == []
