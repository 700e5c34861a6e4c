"""The network cases: bridge networks and published ports, pylxcore against
podman (netavark, rootful) and Docker 20.10 (its bridge and docker-proxy).

- ``net_run_rm``: ``run --rm`` on a bridge network against the same on
  ``none`` (and the same pair for docker and podman, for scale);
- ``net_throughput``: TCP throughput (iperf3) from the host through a port
  published on 127.0.0.1, against talking to the container's address
  directly, and against docker's and podman's published ports;
- ``net_connect_rate``: TCP connections a second through that port (each
  connects, reads one byte the server sends, and is closed by the server).

The servers (iperf3, and a small Python accept loop) run in the container's
network namespace (``nsenter --net=/proc/PID/ns/net``; the busybox image has
neither), which is all of the container the path between host and container
involves; the clients run where a user of the host would: in the host's
network namespace for pylxcore, in the peer's namespace for the peers.

The peers must not touch the host's firewall, routes or addresses: each
runs in a network namespace of the case's own (``ip netns add``, removed at
the end). Docker: a second dockerd of ``tests/peers.py`` started under
``nsenter --net`` with its bridge, iptables, masquerade, ip_forward and
docker-proxy (its defaults); its ``docker0``, its rules and ``net.ipv4.ip_forward``
are that namespace's. Podman: a store of its own (``DIR/netpodman``), every
command under ``nsenter --net`` of another namespace, so that netavark's
``podman0`` bridge and iptables rules are made there. Each case checks that
the host's nftables ruleset (but pylxcore's own tables) and its
``ip_forward`` are the same at its end as at its start.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from cases import IDLE, Ctx, Round
from docker import IMAGE as DOCKER_IMAGE
from docker import Docker
from podman import IMAGE as PODMAN_IMAGE
from podman import ULIMITS, Podman
from timing import Row, Sample, clocked

from pylxcore import Container
from tests.peers import DockerPeer

NET = "pxbench-net"
IPERF_PORT, CONN_PORT = 5201, 5202  # in the containers
PEER_PORTS = {IPERF_PORT: 18001, CONN_PORT: 18002}  # published by the peers, in their own namespaces
IPERF_SECONDS = 2
CONNECTIONS = 300  # per connection-rate sample

# The connection-rate server (in a container's network namespace) and client.
CONN_SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {CONN_PORT}))
s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.send(b"x")
    c.close()
"""
CONN_CLIENT = """
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
for _ in range(n):
    s = socket.create_connection((host, port), timeout=10)
    if s.recv(1) != b"x":
        raise SystemExit("the server sent nothing")
    s.close()
print(n / (time.perf_counter() - t0))
"""


def _sh(argv: list[str], timeout: float = 120) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        raise RuntimeError(f"{' '.join(argv[:4])} … exited {proc.returncode}: {err[-1] if err else ''}")
    return proc.stdout


def host_state() -> str:
    """The host's nft ruleset (but pylxcore's tables) and ip_forward: what the case must leave as it was."""
    out = _sh(["nft", "list", "ruleset"])
    kept, skip = [], False
    for line in out.splitlines():
        if line.startswith("table ") and "pylxcore_" in line:
            skip = True
        if not skip:
            kept.append(line)
        if skip and line == "}":
            skip = False
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    return "\n".join([*kept, f"ip_forward={forward}"])


# -- namespaces and servers ---------------------------------------------------------


@contextlib.contextmanager
def netns(tag: str) -> Iterator[str]:
    """A network namespace of our own with its loopback up; deleted at the end."""
    name = f"pxbench-{tag}-{secrets.token_hex(3)}"
    _sh(["ip", "netns", "add", name])
    try:
        _sh(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def enter(ns: str | None) -> list[str]:
    """The argv prefix that runs a command in namespace ``ns`` (None: the host's)."""
    return [] if ns is None else ["nsenter", f"--net=/run/netns/{ns}"]


class Servers:
    """iperf3 and the connection-rate server in a container's network namespace; stopped by pid."""

    def __init__(self, pid: int) -> None:
        into = ["nsenter", f"--net=/proc/{pid}/ns/net"]
        iperf3 = [*into, "iperf3", "-s", "-p", str(IPERF_PORT)]
        self.procs = [subprocess.Popen(iperf3, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)]
        conn = subprocess.Popen([*into, sys.executable, "-c", CONN_SERVER], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(conn)
        assert conn.stdout is not None
        if conn.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError(f"the connection server in process {pid}'s network namespace did not start")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def iperf(ns: str | None, host: str, port: int) -> float:
    """Gbit/s received by the server in an ``IPERF_SECONDS`` iperf3 test from namespace ``ns``."""
    for _ in range(20):  # (the server takes a moment to listen, and one test at a time)
        proc = subprocess.run([*enter(ns), "iperf3", "-c", host, "-p", str(port), "-t", str(IPERF_SECONDS),
                               "-J"], capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode == 0:
            with contextlib.suppress(ValueError, KeyError):  # (an error answered as JSON: again)
                return float(json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
        time.sleep(0.2)
    raise RuntimeError(f"iperf3 to {host}:{port} failed: {proc.stdout.strip()[-200:]} {proc.stderr.strip()}")


def connect_rate(ns: str | None, host: str, port: int) -> float:
    """Connections a second to ``host:port`` from namespace ``ns`` (``CONNECTIONS`` in a row)."""
    out = _sh([*enter(ns), sys.executable, "-c", CONN_CLIENT, host, str(port), str(CONNECTIONS)])
    return float(out.strip())


# -- the peers, in namespaces of their own ----------------------------------------------


class NetDocker(Docker):
    """The docker peer with its bridge, iptables and docker-proxy, in namespace ``ns``."""

    def __init__(self, ctx: Ctx, ns: str) -> None:
        super().__init__(ctx.dir, ctx.rootfs)
        self.dir = ctx.dir / "netdocker"
        self.ns = ns

    def make_peer(self) -> DockerPeer:
        peer = DockerPeer(self.dir)
        peer.netns = self.ns
        # Docker's defaults (bridge docker0, iptables, masquerade, ip_forward,
        # docker-proxy), all of them the namespace's own; IPv6 stays off.
        peer.network_flags = ["--ip6tables=false"]
        return peer

    def pid_and_ip(self, name: str) -> tuple[int, str]:
        assert self.peer is not None
        out = self.peer.run("inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.IPAddress}}", name).stdout
        pid, ip = out.split()
        return int(pid), ip


class NetPodman(Podman):
    """Podman on a store of its own, each command in namespace ``ns`` (netavark's rules go there)."""

    def __init__(self, ctx: Ctx, ns: str) -> None:
        super().__init__(ctx.dir)
        self.dir = ctx.dir / "netpodman"  # (--runroot DIR/netpodman/runroot: well under 50 characters)
        self.ns = ns
        self.conf = self.dir / "containers.conf"

    def argv(self, *args: str) -> list[str]:
        # Its network configs in our dir, not /etc/containers/networks.
        return [*enter(self.ns), "env", f"CONTAINERS_CONF={self.conf}", *super().argv(*args)]

    def setup(self, rootfs: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f'[network]\nnetwork_config_dir = "{self.dir / "networks"}"\n')
        super().setup(rootfs)

    def pid_and_ip(self, name: str) -> tuple[int, str]:
        out = self.run("inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.IPAddress}}", name).stdout.decode()
        pid, ip = out.split()
        return int(pid), ip


@dataclass
class Side:
    """One contender's server container: where its clients run and what they dial."""

    ns: str | None  # the namespace the clients run in (None: the host's)
    direct: str  # the container's address
    published: str  # the host address its ports are published on
    ports: dict[int, int]  # container port → published host port


@contextlib.contextmanager
def _pylxcore_side(ctx: Ctx) -> Iterator[Side]:
    ctx.engine.networks.create(NET)
    c: Container | None = None
    servers = None
    try:
        ports = {f"{p}/tcp": ("127.0.0.1", None) for p in (IPERF_PORT, CONN_PORT)}
        c = ctx.engine.containers.run(ctx.image, IDLE, detach=True, network=NET, ports=ports)
        pid = c._pids()[0]  # (its init: the container's network namespace)
        assert pid is not None and c.ip_address is not None
        servers = Servers(pid)
        published = {p: c.ports[f"{p}/tcp"][0][1] for p in (IPERF_PORT, CONN_PORT)}
        yield Side(None, c.ip_address, "127.0.0.1", published)
    finally:
        if servers is not None:
            servers.stop()
        if c is not None:
            c.remove(force=True)
        ctx.engine.networks.remove(NET)


@contextlib.contextmanager
def _pylxcore_ns_side(ctx: Ctx) -> Iterator[Side | str]:
    """pylxcore alone in a network namespace, as the peers are: ``serve()`` in
    a process of its own there, on a store root of its own (its containers'
    supervisors, and so their veths, come from a process in that namespace)."""
    with netns("pylxcore") as ns:
        # (``ip netns exec``, not nsenter: liblxc finds a bridge through /sys,
        # which it mounts again for the namespace, in a mount namespace that
        # lives as long as the helper and what it starts.)
        argv = ["ip", "netns", "exec", ns, sys.executable, __file__, "serve", str(ctx.dir / "nsroot")]
        helper = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert helper.stdin is not None and helper.stdout is not None
        try:
            line = helper.stdout.readline()
            if not line:
                yield "the pylxcore helper in a namespace of its own did not start (see the run's stderr)"
                return
            info = json.loads(line)
            yield Side(ns, info["direct"], "127.0.0.1", {int(k): v for k, v in info["ports"].items()})
        finally:
            helper.stdin.close()  # (it cleans up and exits)
            try:
                helper.wait(120)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
            helper.stdout.close()


def serve(root: str) -> None:
    """The helper of ``_pylxcore_ns_side``: a container with its servers and
    published ports, described on stdout; all removed when stdin closes."""
    from pylxcore import Engine, Image

    engine = Engine(root)
    image = engine.images.build(Image("pxbench/busybox:1", base="busybox")).name
    engine.networks.create(NET)
    c, servers = None, None
    try:
        ports = {f"{p}/tcp": ("127.0.0.1", None) for p in (IPERF_PORT, CONN_PORT)}
        c = engine.containers.run(image, IDLE, detach=True, network=NET, ports=ports)
        pid = c._pids()[0]
        assert pid is not None
        servers = Servers(pid)
        published = {p: c.ports[f"{p}/tcp"][0][1] for p in (IPERF_PORT, CONN_PORT)}
        print(json.dumps({"direct": c.ip_address, "ports": published}), flush=True)
        sys.stdin.read()
    finally:
        if servers is not None:
            servers.stop()
        if c is not None:
            c.remove(force=True)
        engine.networks.remove(NET)
        engine.close()


def _publish() -> list[str]:
    return [a for port, host in PEER_PORTS.items() for a in ("-p", f"127.0.0.1:{host}:{port}")]


@contextlib.contextmanager
def _docker_side(ctx: Ctx) -> Iterator[Side | str]:
    """Docker's server container in a namespace of its own; or why there is none."""
    with netns("docker") as ns:
        docker = NetDocker(ctx, ns)
        servers = None
        try:
            if not docker.ready():
                yield docker.reason or "?"
                return
            docker.run("run", "-d", "--name", "pxbench-srv", *_publish(), DOCKER_IMAGE, *IDLE)
            pid, ip = docker.pid_and_ip("pxbench-srv")
            servers = Servers(pid)
            yield Side(ns, ip, "127.0.0.1", dict(PEER_PORTS))
        finally:
            if servers is not None:
                servers.stop()
            docker.cleanup()  # (before the namespace goes: dockerd runs in it)


@contextlib.contextmanager
def _podman_side(ctx: Ctx) -> Iterator[Side | str]:
    """Podman's server container in a namespace of its own; or why there is none."""
    if ctx.podman.reason:
        yield ctx.podman.reason
        return
    with _netavark_state(), netns("podman") as ns:
        podman = NetPodman(ctx, ns)
        servers = None
        try:
            podman.setup(ctx.rootfs)
            if podman.reason:
                yield podman.reason
                return
            podman.run("run", "-d", "--name", "pxbench-srv", *_publish(), *ULIMITS, PODMAN_IMAGE, *IDLE)
            pid, ip = podman.pid_and_ip("pxbench-srv")
            servers = Servers(pid)
            yield Side(ns, ip, "127.0.0.1", dict(PEER_PORTS))
        finally:
            if servers is not None:
                servers.stop()
            podman.cleanup()  # (in the namespace: netavark removes its rules there)


@contextlib.contextmanager
def _netavark_state() -> Iterator[None]:
    """netavark keeps its address allocations in /run/containers/networks/ipam.db
    wherever podman runs: removed at the end when it was not there before."""
    ipam = Path("/run/containers/networks/ipam.db")
    had_ipam = ipam.exists()
    try:
        yield
    finally:
        if not had_ipam:
            with contextlib.suppress(OSError):
                ipam.unlink()


@contextlib.contextmanager
def _unchanged_host() -> Iterator[None]:
    before = host_state()
    yield
    after = host_state()
    if after != before:
        raise RuntimeError(f"the host's nft ruleset or ip_forward changed during the case:\n{after}")


def _sample(side: Side | str, measure: Callable[[Side], float]) -> Sample | str:
    return side if isinstance(side, str) else (lambda: measure(side))


def _at_least(case: str, measure: str, value: float, unit: str, label: str, r: Round, peer: str,
              factor: float) -> Row:
    """A "≥ factor× the peer's figure" row (higher is better), or one saying why the peer was not measured."""
    target = f"≥ {factor:g}×"
    if peer in r.why:
        return Row(case, measure, value, unit, label, None, None, "", target, None,
                   note=f"{peer} not measured: {r.why[peer]}")
    base = r.m[peer]
    ratio = value / base if base else None
    return Row(case, measure, value, unit, label, base, ratio, "of", target,
               None if ratio is None else ratio >= factor)


# -- the cases ------------------------------------------------------------------


def net_run_rm(ctx: Ctx) -> list[Row]:
    with _unchanged_host(), _netavark_state(), netns("docker") as dns_, netns("podman") as pns:
        ctx.engine.networks.create(NET)
        docker, podman = NetDocker(ctx, dns_), NetPodman(ctx, pns)
        try:
            run = ctx.engine.containers.run
            peers: dict[str, Sample | str] = {"none": clocked(run, ctx.image, ["true"], remove=True)}
            if docker.ready():
                peers["docker"] = clocked(docker.run, "run", "--rm", DOCKER_IMAGE, "true")
                peers["docker_none"] = clocked(docker.run_rm)
            else:
                peers["docker"] = peers["docker_none"] = docker.reason or "?"
            if not ctx.podman.reason:
                podman.setup(ctx.rootfs)
            why = ctx.podman.reason or podman.reason
            if why:
                peers["podman"] = peers["podman_none"] = why
            else:
                peers["podman"] = clocked(podman.run, "run", "--rm", *ULIMITS, PODMAN_IMAGE, "true")
                peers["podman_none"] = clocked(podman.run_rm)
            r = Round.of(clocked(run, ctx.image, ["true"], remove=True, network=NET), peers, ctx.medium)
        finally:
            podman.cleanup()
            docker.cleanup()
            ctx.engine.networks.remove(NET)
    what = f"run(img, ['true'], remove=True, network={NET!r}) (a bridge network)"
    px, none = r.m["px"], r.m["none"]
    limit = 1.2 * none + 0.015
    rows = [Row("net_run_rm", what, px, "s", "the same with network='none'", none, px / none, "of",
                "≤ 1.2× + 15 ms", px <= limit, note=f"bridge costs {(px - none) * 1e3:.1f} ms more")]
    for peer, label in (("docker", "docker run --rm (bridge) vs --network none"),
                        ("podman", "podman run --rm (netavark bridge) vs --network none")):
        if peer in r.why:
            rows.append(Row("net_run_rm", label, None, note=f"{peer} not measured: {r.why[peer]}"))
            continue
        b, n = r.m[peer], r.m[f"{peer}_none"]
        rows.append(Row("net_run_rm", label, b, "s", f"{peer} --network none", n, b / n, "of",
                        note=f"bridge costs {(b - n) * 1e3:.0f} ms more"))
    return rows


def _measure(ctx: Ctx, measure: Callable[[str | None, str, int], float], port: int) -> Round:
    """``measure(namespace, host, port)`` of every contender, round-robin: pylxcore
    on the host ("px", "direct") and alone in a namespace ("ns", "ns_direct"),
    docker and podman in theirs; each through its published port and directly."""
    def pub(side: Side | str) -> Sample | str:
        return _sample(side, lambda s: measure(s.ns, s.published, s.ports[port]))

    def direct(side: Side | str) -> Sample | str:
        return _sample(side, lambda s: measure(s.ns, s.direct, port))

    with _unchanged_host(), _pylxcore_side(ctx) as px, _pylxcore_ns_side(ctx) as ns, \
            _docker_side(ctx) as dk, _podman_side(ctx) as pm:
        return Round.of(lambda: measure(None, px.published, px.ports[port]), {
            "direct": lambda: measure(None, px.direct, port),
            "ns": pub(ns), "ns_direct": direct(ns),
            "docker": pub(dk), "docker_direct": direct(dk),
            "podman": pub(pm), "podman_direct": direct(pm),
        }, ctx.medium)


def _rows(case: str, what: str, unit: str, r: Round, peer_targets: dict[str, float],
          direct_target: float | None) -> list[Row]:
    """The rows of a case measured by ``_measure``: pylxcore's published port
    against its direct path (``direct_target``: the factor it must reach, or
    None: for scale), on the host and alone in a namespace; pylxcore alone in
    a namespace against the peers alone in theirs (``peer_targets``: the
    factor each must reach; others shown for scale); and for scale the rest."""
    labels = {"docker": "docker: -p 127.0.0.1:… (docker-proxy)",
              "podman": "podman: -p 127.0.0.1:… (netavark DNAT)"}
    def scale(row: Row, target: float | None) -> Row:
        if target is None:
            row.target, row.met = "", None
        return row

    host = f"{what}, on the host"
    rows = [scale(_at_least(case, host, r.m["px"], unit, "the container's address, directly", r, "direct",
                            direct_target or 1), direct_target)]
    if "ns" in r.why:
        return [*rows, Row(case, f"{what}, pylxcore alone in a namespace", None,
                           note=f"not measured: {r.why['ns']}")]
    alone = f"{what}, pylxcore alone in a namespace as the peers are"
    for peer, label in labels.items():
        target = peer_targets.get(peer)
        rows.append(scale(_at_least(case, alone, r.m["ns"], unit, label, r, peer, target or 1), target))
    rows.append(scale(_at_least(case, alone, r.m["ns"], unit, "its container's address, directly", r,
                                "ns_direct", direct_target or 1), direct_target))
    rows.append(scale(_at_least(case, host, r.m["px"], unit, "pylxcore alone in a namespace", r, "ns", 1),
                      None))
    return [*rows, *_peer_scale(case, unit, r)]


def net_throughput(ctx: Ctx) -> list[Row]:
    if shutil.which("iperf3") is None:
        raise RuntimeError("needs iperf3 (apt-get install iperf3; scripts/setup installs it)")
    r = _measure(ctx, iperf, IPERF_PORT)
    what = f"TCP throughput to a port published on 127.0.0.1 (iperf3, {IPERF_SECONDS} s)"
    return _rows("net_throughput", what, "Gbit/s", r, {"docker": 1, "podman": 1}, 0.9)


def net_connect_rate(ctx: Ctx) -> list[Row]:
    r = _measure(ctx, connect_rate, CONN_PORT)
    what = f"TCP connections a second through a port published on 127.0.0.1 ({CONNECTIONS} in a row)"
    return _rows("net_connect_rate", what, "conn/s", r, {"docker": 1}, None)


def _peer_scale(case: str, unit: str, r: Round) -> list[Row]:
    """For scale: each peer's published port against its own container's address, in its namespace."""
    rows = []
    for peer in ("docker", "podman"):
        if peer in r.why or f"{peer}_direct" in r.why:
            continue
        pub, direct = r.m[peer], r.m[f"{peer}_direct"]
        rows.append(Row(case, f"{peer}: its published port (in its namespace)", pub, unit,
                        f"{peer}: its container's address, directly", direct,
                        pub / direct if direct else None, "of"))
    return rows


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2])
