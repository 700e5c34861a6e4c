"""Networks (SPEC.md section 12): bridges, published ports, names, isolation.

Traffic goes only between loopback, the library's bridges and containers,
and a network namespace a test makes itself."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path
from typing import Iterator

import attrs
import pytest

from pylxcore import Engine
from pylxcore.cli.networks import parse_publish
from pylxcore.errors import Conflict, NetworkNotFound, SpecError
from pylxcore.network import dns, endpoint, links, netns, nftables, records, subnets
from pylxcore.runtime.lxcconfig import Nic, render_nics
from pylxcore.spec import validate
from tests.conftest import until
from tests.netutil import build_web, fetch, net_engine, ruleset_outside, serve

__all__ = ["net_engine"]  # (the fixture, imported to be found)


# -- pure rules ------------------------------------------------------------------


def test_published_ports_forms() -> None:
    assert validate.published_ports({"80/tcp": 8080, "53/udp": None, "443": ("127.0.0.1", 8443)}) == [
        ("443/tcp", "127.0.0.1", 8443),
        ("53/udp", "0.0.0.0", None),
        ("80/tcp", "0.0.0.0", 8080),
    ]
    assert validate.published_ports({"80": [8080, ("127.0.0.1", None)]}) == [
        ("80/tcp", "0.0.0.0", 8080),
        ("80/tcp", "127.0.0.1", None),
    ]
    for bad in ({"80/sctp": 1}, {"x": 1}, {"80": 0}, {"80": 70000}, {"80": ("::1", 80)}, {"80": True}, [80]):
        with pytest.raises(SpecError):
            validate.published_ports(bad)


def test_cli_publish_forms_are_the_library_forms() -> None:
    ports = parse_publish(["8080:80", "127.0.0.1:9090:90", "127.0.0.1::91", "53/udp", "5353:53/udp"])
    assert ports == {
        "80/tcp": [8080], "90/tcp": [("127.0.0.1", 9090)], "91/tcp": [("127.0.0.1", None)],
        "53/udp": [None, 5353],
    }
    assert validate.published_ports(ports)  # (the library takes them)
    with pytest.raises(SpecError):
        parse_publish(["a:80"])
    # Ranges, as docker's: port by port, or each on a free host port.
    assert parse_publish(["8000-8002:80-82", "127.0.0.1::90-91/udp"]) == {
        "80/tcp": [8000], "81/tcp": [8001], "82/tcp": [8002],
        "90/udp": [("127.0.0.1", None)], "91/udp": [("127.0.0.1", None)],
    }
    for bad in ("8000-8001:80-82", "82-80", "80-:80"):
        with pytest.raises(SpecError):
            parse_publish([bad])


def test_subnet_choice_avoids_what_the_host_uses() -> None:
    used = [ipaddress.IPv4Network("10.89.0.0/24"), ipaddress.IPv4Network("10.89.1.0/25")]
    assert str(subnets.pick(used)) == "10.89.2.0/24"
    assert str(subnets.pick([ipaddress.IPv4Network("10.0.0.0/8")])) == "172.29.0.0/24"
    with pytest.raises(Conflict):
        subnets.check_free(ipaddress.IPv4Network("10.89.0.128/25"), used)
    with pytest.raises(SpecError):
        subnets.parse_subnet("10.0.0.1/24")  # host bits set
    assert subnets.free_address(ipaddress.IPv4Network("10.5.0.0/29"), ["10.5.0.2"]) == "10.5.0.3"
    for host in links.host_subnets():  # what the host really has is never picked
        assert not subnets.pick(links.host_subnets()).overlaps(host)


def test_rules_render_isolation_nat_and_ports() -> None:
    ports = [["80/tcp", "0.0.0.0", 8080], ["53/udp", "127.0.0.1", 5353]]
    web = records.EndpointRecord("10.1.0.2", ports=ports)
    nets = [
        records.NetworkRecord("a", "1", "pxbA", "10.1.0.0/24", "10.1.0.1", False, True, 0.0, {"web": web}),
        records.NetworkRecord("i", "2", "pxbI", "10.2.0.0/24", "10.2.0.1", True, True, 0.0),
    ]
    text = nftables.render("t", nets)
    assert "tcp dport 8080 dnat to 10.1.0.2:80" in text
    assert "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.1.0.2:53" in text
    assert 'ip saddr 10.1.0.0/24 oifname != "pxbA" masquerade' in text
    assert "ip saddr 10.2.0.0/24 oifname" not in text  # internal: no NAT out
    assert 'iifname "pxbI" oifname != "pxbI" drop' in text


# -- the real thing --------------------------------------------------------------


def _page_in(c: object, url: str, timeout: int = 3) -> str | None:
    # (busybox's timeout applet: this static busybox's own wget -T crashes)
    r = c.exec(["timeout", str(timeout), "wget", "-q", "-O", "-", url])  # type: ignore[attr-defined]
    return r.stdout.decode().strip() if r.exit_code == 0 else None


@pytest.mark.slow
def test_three_web_servers_by_port_and_by_name(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    before = ruleset_outside()
    net = engine.networks.create("appnet")
    other = engine.networks.create("othernet")
    assert not ipaddress.ip_network(net.subnet).overlaps(ipaddress.ip_network(other.subnet))
    webs = []
    for i in range(3):
        ports = {"80/tcp": None} if i else {"80/tcp": ("127.0.0.1", None)}
        webs.append(engine.containers.run(image, serve(f"page-{i}"), name=f"web{i}", detach=True,
                                          network="appnet", ports=ports, aliases=[f"www{i}"]))
    client = engine.containers.run(image, name="client", detach=True, network="appnet")
    outsider = engine.containers.run(image, name="outsider", detach=True, network="othernet")
    host_ports = set()
    for i, web in enumerate(webs):
        ((ip, port),) = web.ports["80/tcp"]
        assert ip == ("127.0.0.1" if i == 0 else "0.0.0.0")
        host_ports.add(port)
        # On the host's loopback, with its own page.
        url = f"http://127.0.0.1:{port}/"
        assert until(lambda: fetch(url), what=f"web{i} on 127.0.0.1") == f"page-{i}"  # noqa: B023
        if i:  # ...and on the host's other addresses (here: a bridge's, which is the host's)
            assert fetch(f"http://{other.gateway}:{port}/") == f"page-{i}"
        # By name and by alias from a fourth container; and through the host (hairpin).
        assert _page_in(client, f"http://web{i}/") == f"page-{i}"
        assert _page_in(client, f"http://www{i}/") == f"page-{i}"
        if i:
            assert _page_in(client, f"http://{net.gateway}:{port}/") == f"page-{i}"
        # Not from another network: not by address, not by name.
        assert _page_in(outsider, f"http://{web.ip_address}/", timeout=2) is None
        assert outsider.exec(["nslookup", f"web{i}"]).exit_code != 0
    assert len(host_ports) == 3
    # The default bridge has no names (as Docker's); /etc/hosts has the container's own.
    hosts = client.exec(["cat", "/etc/hosts"]).stdout.decode()
    assert f"{client.ip_address}\tclient" in hosts
    assert engine.networks.get("appnet").containers == ("client", "web0", "web1", "web2")
    with pytest.raises(Conflict):
        engine.networks.remove("appnet")
    with pytest.raises(Conflict):  # a host port that is published already
        engine.containers.create(image, network="othernet", ports={"80/tcp": sorted(host_ports)[0]})
    for c in [*webs, client, outsider]:
        c.remove(force=True)
    assert fetch(f"http://127.0.0.1:{sorted(host_ports)[0]}/", timeout=1) is None
    engine.networks.remove("appnet")
    engine.networks.remove("othernet")
    assert ruleset_outside() == before


@attrs.frozen
class Outside:
    ns: str  # the namespace's name
    url: str  # its web server
    host_ip: str  # the host's address on the veth to it


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Outside]:
    """A network namespace of the test's own, "outside": a veth from the host
    to it and a web server in it."""
    tag = os.urandom(3).hex()
    ns, veth = f"pxtest-{tag}", f"pxto{tag}"
    used = links.host_subnets()
    net = next(n for n in ipaddress.ip_network("198.18.0.0/16").subnets(new_prefix=30)
               if not any(n.overlaps(u) for u in used))
    host_ip, ns_ip = (str(h) for h in net.hosts())
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("outside\n")

    def sh(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    sh("ip", "netns", "add", ns)
    server = None
    try:
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", veth)
        sh("ip", "link", "set", veth, "up")
        # Replies to the containers come back through it: forwarding on this veth only.
        Path(f"/proc/sys/net/ipv4/conf/{veth}/forwarding").write_text("1")
        sh("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", f"{ns_ip}:8000",
                                   "-h", str(tmp_path / "www")])
        until(lambda: subprocess.run(["ip", "netns", "exec", ns, "busybox", "wget", "-q", "-O", "-",
                                      f"http://{ns_ip}:8000/"], capture_output=True).returncode == 0,
              what="the outside server")
        yield Outside(ns, f"http://{ns_ip}:8000/", host_ip)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)  # (its veth goes with it)
        subprocess.run(["ip", "link", "delete", veth], check=False, capture_output=True)


@pytest.mark.slow
def test_internal_network_has_no_way_out_and_the_default_bridge_has(
    net_engine: Engine, outside: Outside
) -> None:
    engine = net_engine
    image = build_web(engine)
    engine.networks.create("closed", internal=True)
    inside = engine.containers.run(image, name="inside", detach=True, network="closed")
    bridged = engine.containers.run(image, name="bridged", detach=True, network="bridge")
    engine.containers.run(image, serve("peer"), name="peer", detach=True, network="closed")
    assert engine.networks.get("bridge").subnet  # made on first use
    assert _page_in(bridged, outside.url) == "outside"
    assert _page_in(inside, outside.url, timeout=2) is None
    # A port published on the default bridge answers on the host's address that "outside" sees.
    web = engine.containers.run(image, serve("published"), name="web", detach=True, ports={"80/tcp": None})
    ((_, port),) = web.ports["80/tcp"]

    def from_outside() -> str | None:
        r = subprocess.run(["ip", "netns", "exec", outside.ns, "busybox", "wget", "-q", "-O", "-",
                            f"http://{outside.host_ip}:{port}/"], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else None

    assert until(from_outside, what="the published port from outside") == "published"
    # ...but on its own network it talks, by name.
    assert until(lambda: _page_in(inside, "http://peer/"), what="peer by name") == "peer"
    # The default bridge has no names (as Docker's): no DNS server of ours in its resolv.conf.
    # (Not asked by a lookup: that would go to the host's resolvers, off this host.)
    resolv = bridged.exec(["cat", "/etc/resolv.conf"]).stdout.decode()
    assert f"nameserver {engine.networks.get('bridge').gateway}" not in resolv
    assert "nameserver 127." not in resolv


@pytest.mark.slow
def test_connect_and_disconnect_stopped_and_running_containers(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    engine.networks.create("one")
    two = engine.networks.create("two")
    prefix = two.subnet.rsplit(".", 1)[0] + "."
    c = engine.containers.create(image, name="multi", network="one", hostname="multi-host")
    engine.networks.connect("two", "multi", aliases=["m2"])  # stopped: from its next start
    assert engine.networks.get("two").containers == ("multi",)
    c.start()
    addrs = c.exec(["ip", "-4", "-o", "addr"]).stdout.decode()
    assert c.ip_address is not None and c.ip_address in addrs and prefix in addrs
    assert c.exec(["hostname"]).stdout.decode().strip() == "multi-host"
    # Running: its interface goes at once, and comes back at once.
    web = engine.containers.run(image, serve("on-two"), name="web", detach=True, network="two")
    assert until(lambda: _page_in(c, f"http://{web.ip_address}/"), what="web over two") == "on-two"
    engine.networks.disconnect("two", "multi")
    assert prefix not in c.exec(["ip", "-4", "-o", "addr"]).stdout.decode()
    assert _page_in(c, f"http://{web.ip_address}/", timeout=2) is None
    assert engine.networks.get("two").containers == ("web",)
    with pytest.raises(Conflict):
        engine.networks.disconnect("two", "multi")
    engine.networks.connect("two", "multi")
    assert prefix in c.exec(["ip", "-4", "-o", "addr"]).stdout.decode()
    assert web.exec(["nslookup", "multi"]).exit_code == 0
    # ...and after a restart it has the same two interfaces, from its config.
    c.stop(timeout=1)
    c.start()
    assert prefix in c.exec(["ip", "-4", "-o", "addr"]).stdout.decode()
    with pytest.raises(Conflict):
        engine.networks.connect("two", "multi")


def test_network_names_errors_and_reserved(net_engine: Engine) -> None:
    engine = net_engine
    with pytest.raises(SpecError):
        engine.networks.create("host")
    with pytest.raises(SpecError):
        engine.networks.create("bad name")
    with pytest.raises(NetworkNotFound):
        engine.networks.get("nosuch")
    with pytest.raises(Conflict):  # the host's loopback
        engine.networks.create("lo", subnet="127.0.0.0/24")
    net = engine.networks.create("n1", subnet="10.89.77.0/24")
    assert (net.subnet, net.gateway) == ("10.89.77.0/24", "10.89.77.1")
    with pytest.raises(Conflict):
        engine.networks.create("n1")
    with pytest.raises(Conflict):  # the same subnet again
        engine.networks.create("n2", subnet="10.89.77.0/25")
    assert [n.name for n in engine.networks.list()] == ["n1"]
    assert engine.networks.prune() == ["n1"]
    assert engine.networks.list() == []


def test_command_line(net_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from pylxcore.cli import main

    engine = net_engine
    image = build_web(engine)
    root = ["--root", str(engine.root)]

    def cli(*argv: str) -> tuple[int, str]:
        code = main([*root, *argv])
        return code, capsys.readouterr().out

    assert cli("network", "create", "--subnet", "10.89.123.0/24", "clinet") == (0, "clinet\n")
    code, out = cli("network", "ls")
    assert code == 0 and "clinet" in out and "10.89.123.0/24" in out
    code, out = cli("run", "-d", "--name", "w", "--network", "clinet", "--hostname", "box",
                    "--network-alias", "alias1", "-p", "127.0.0.1::80", "-p", "5353:53/udp",
                    image, *serve("cli"))
    assert (code, out) == (0, "w\n")
    c = engine.containers.get("w")
    ((_, port),) = c.ports["80/tcp"]
    assert cli("port", "w") == (0, f"53/udp -> 0.0.0.0:5353\n80/tcp -> 127.0.0.1:{port}\n")
    assert cli("port", "w", "80") == (0, f"127.0.0.1:{port}\n")
    assert until(lambda: fetch(f"http://127.0.0.1:{port}/"), what="w on its port") == "cli"
    assert c.exec(["hostname"]).stdout == b"box\n"
    code, out = cli("network", "inspect", "clinet")
    assert code == 0 and '"alias1"' in out and c.ip_address in out
    assert cli("network", "rm", "clinet")[0] == 1  # a container is on it
    c.remove(force=True)
    assert cli("network", "rm", "clinet") == (0, "clinet\n")
    assert cli("network", "ls", "-q") == (0, "")


def test_chosen_address_and_a_published_range(net_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from pylxcore.cli import main

    engine = net_engine
    image = build_web(engine)
    engine.networks.create("chosen", subnet="10.89.124.0/24")
    code = main(["--root", str(engine.root), "run", "-d", "--name", "w", "--network", "chosen",
                 "--ip", "10.89.124.50", "-p", "127.0.0.1::80-81", image, *serve("chosen")])
    assert (code, capsys.readouterr().out) == (0, "w\n")
    c = engine.containers.get("w")
    assert c.ip_address == "10.89.124.50"
    assert c.exec(["ip", "-4", "-o", "addr"]).stdout.decode().count("10.89.124.50/24") == 1
    ((_, port80),), ((_, port81),) = c.ports["80/tcp"], c.ports["81/tcp"]
    assert port80 != port81
    assert until(lambda: fetch(f"http://127.0.0.1:{port80}/"), what="w on its port") == "chosen"
    # The next container gets a free address, not the chosen one.
    other = engine.containers.create(image, name="o", network="chosen")
    assert other.ip_address == "10.89.124.2"
    with pytest.raises(Conflict):  # taken
        engine.containers.create(image, name="x", network="chosen", ip="10.89.124.50")
    with pytest.raises(Conflict):  # the gateway
        engine.containers.create(image, name="x", network="chosen", ip="10.89.124.1")
    for bad in ("10.89.125.5", "10.89.124.255", "nope"):
        with pytest.raises(SpecError):
            engine.containers.create(image, name="x", network="chosen", ip=bad)
    with pytest.raises(SpecError):  # (as Docker: not on the default bridge)
        engine.containers.create(image, name="x", network="bridge", ip="10.89.124.60")
    with pytest.raises(SpecError):
        engine.containers.create(image, name="x", ip="10.89.124.60")  # network "none"
    assert sorted(engine.networks.get("chosen").containers) == ["o", "w"]
    # connect --ip, to a stopped container: it has that address from its start.
    engine.networks.create("second", subnet="10.89.126.0/24")
    engine.networks.connect("second", "o", ip="10.89.126.77")
    other.start()
    assert "10.89.126.77/24" in other.exec(["ip", "-4", "-o", "addr"]).stdout.decode()


def test_resolver_settings(net_engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from pylxcore.cli import main

    engine = net_engine
    image = build_web(engine)
    # The default bridge: the name servers given, instead of the host's; the search and options too.
    code = main(["--root", str(engine.root), "run", "-d", "--name", "d", "--network", "bridge",
                 "--dns", "192.0.2.53", "--dns", "192.0.2.54", "--dns-search", "example.test",
                 "--dns-option", "ndots:2", image])
    assert (code, capsys.readouterr().out) == (0, "d\n")
    resolv = engine.containers.get("d").exec(["cat", "/etc/resolv.conf"]).stdout.decode().splitlines()
    assert [line for line in resolv if line.startswith("nameserver")] == [
        "nameserver 192.0.2.53", "nameserver 192.0.2.54"]
    assert "search example.test" in resolv and "options ndots:2" in resolv
    # A user network: its own DNS server answers (the containers' names); search and options as given.
    net = engine.networks.create("named")
    u = engine.containers.run(image, name="u", detach=True, network="named", dns_search=["example.test"])
    resolv = u.exec(["cat", "/etc/resolv.conf"]).stdout.decode().splitlines()
    assert resolv == [f"nameserver {net.gateway}", "search example.test", "options ndots:0"]
    with pytest.raises(SpecError):  # (its server forwards to the host's resolvers, whatever is given)
        engine.containers.create(image, name="x", network="named", dns=["192.0.2.53"])
    assert engine.networks.get("named").containers == ("u",)  # (nothing was allocated to "x")
    for bad in ({"dns": "192.0.2.53"}, {"dns": ["nope"]}, {"dns_opt": ["a b"]}, {"dns_search": ["-x"]}):
        with pytest.raises(SpecError):
            engine.containers.create(image, name="x", network="bridge", **bad)  # type: ignore[arg-type]
    with pytest.raises(SpecError):
        engine.containers.create(image, name="x", dns=["192.0.2.53"])  # network "none"


def test_user_namespaced_container_publishes_a_port(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    c = engine.containers.run(image, serve("userns"), name="u", detach=True, userns=True,
                              ports={"80/tcp": None})
    ((_, port),) = c.ports["80/tcp"]
    assert until(lambda: fetch(f"http://127.0.0.1:{port}/"), what="the userns container's port") == "userns"
    assert engine.networks.get("bridge").containers == ("u",)
    c.remove(force=True)
    assert engine.networks.get("bridge").containers == ()
    assert not (engine.root / "networks" / "files" / "u").exists()


def test_a_start_makes_bridge_rules_and_dns_again(net_engine: Engine) -> None:
    # What a reboot leaves: records, but no bridge, no table, no dnsmasq.
    engine = net_engine
    image = build_web(engine)
    net = engine.networks.create("again")
    web = engine.containers.create(image, serve("again"), name="web", network="again", ports={"80/tcp": None})
    client = engine.containers.create(image, name="client", network="again")
    rec = records.load(engine.store, "again")
    dns.stop(rec.dns_pid, rec.dns_start)
    links.delete_link(net.bridge)
    nftables.apply(engine.networks.table, [])
    web.start()
    client.start()
    ((_, port),) = web.ports["80/tcp"]
    assert until(lambda: fetch(f"http://127.0.0.1:{port}/"), what="web after the 'reboot'") == "again"
    assert _page_in(client, "http://web/") == "again"


def test_rules_are_loaded_only_when_they_change_and_check_reloads_drifted_ones(
    net_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = net_engine
    image = build_web(engine)
    engine.networks.create("drift")
    table = engine.networks.table
    commits: list[str] = []
    real = nftables._nft

    def counted(script: str) -> None:
        commits.append(script)
        real(script)

    monkeypatch.setattr(nftables, "_nft", counted)
    quiet = engine.containers.create(image, name="quiet", network="drift")  # no ports: no rule changes
    assert commits == []
    engine.containers.create(image, name="w", network="drift", ports={"80/tcp": None})
    assert len(commits) == 1
    quiet.remove()
    assert len(commits) == 1
    monkeypatch.undo()
    assert "dnat to" in (nftables.listing(table) or "")
    # Rules changed behind the library's back, the table's comment unchanged:
    # a change that renders the same rules does not see it; check() loads them again.
    subprocess.run(["nft", "flush", "chain", "ip", table, "published"], check=True)
    nftables.apply(table, records.load_all(engine.store).values())
    assert "dnat to" not in (nftables.listing(table) or "")
    engine.check()
    assert "dnat to" in (nftables.listing(table) or "")


def test_a_container_with_liblxc_veths_in_its_config_still_runs(net_engine: Engine) -> None:
    # Containers made before the library made their network namespaces (and
    # those in a user namespace) have liblxc's veths in their config.
    engine = net_engine
    image = build_web(engine)
    net = engine.networks.create("old")
    c = engine.containers.create(image, serve("old"), name="old", network="old", ports={"80/tcp": None})
    config = c.dir / "config"
    rid, ip = engine.store.root_id, c.ip_address
    assert f"lxc.namespace.share.net = {netns.ns_path(rid, 'old')}\n" in config.read_text()
    veth = endpoint.veth_name(rid, "old", "old")
    nic = Nic(link=net.bridge, address=f"{ip}/24", gateway=net.gateway, pair=veth)
    lines = "".join(f"{k} = {v}\n" for k, v in render_nics([nic], own_netns=False))
    config.write_text("".join(
        line for line in config.read_text().splitlines(keepends=True) if "namespace.share.net" not in line
    ) + lines)
    c.start()
    ((_, port),) = c.ports["80/tcp"]
    assert until(lambda: fetch(f"http://127.0.0.1:{port}/"), what="the old container's port") == "old"
    assert links.ports_of(net.bridge) == [veth] and netns.names(rid) == []
    c.remove(force=True)
    assert links.ports_of(net.bridge) == []  # (liblxc deletes its veth as the container stops)


def test_check_drops_namespace_files_no_running_container_holds(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    net = engine.networks.create("orphans")
    rid = engine.store.root_id
    stopped = engine.containers.create(image, name="stopped", network="orphans")
    assert stopped.ip_address is not None
    # What a process killed between making a namespace and starting its
    # container leaves, and one killed after removing its container.
    last = str(list(ipaddress.ip_network(net.subnet).hosts())[-1])
    for name, ip in (("stopped", stopped.ip_address), ("gone", last)):
        nic = netns.NsNic(endpoint.veth_name(rid, name, "orphans"), net.bridge, ip, 24, None)
        netns.make(netns.ns_path(rid, name), [nic])
    assert len(links.ports_of(net.bridge)) == 2 and netns.names(rid) == ["gone", "stopped"]
    assert not engine.check(repair=False).consistent
    report = engine.check()
    assert any("namespace of gone container gone" in r for r in report.repaired), report
    assert any("namespace of container stopped" in r for r in report.repaired), report
    assert netns.names(rid) == []
    assert until(lambda: links.ports_of(net.bridge) == [], 10, "their veths gone with them")
    # A running container's processes hold its namespace, not a file; one
    # with a restart policy keeps its file, for its supervisor's next start.
    stopped.start()
    kept = engine.containers.run(image, serve("kept"), name="kept", detach=True, network="orphans",
                                 restart="always")
    assert netns.names(rid) == ["kept"] and len(links.ports_of(net.bridge)) == 2
    assert engine.check().consistent
    kept.remove(force=True)
    assert netns.names(rid) == []
