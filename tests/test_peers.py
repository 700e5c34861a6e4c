"""The Docker peer (tests/peers.py) runs a container from pylxcore's busybox
root and, once its context exits, leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylxcore import Engine
from tests.conftest import require_docker
from tests.peers import OUTSIDE, dockerd

# Starts a dockerd of its own: the full suite runs it, the fast lane does not.
pytestmark = pytest.mark.slow


def test_docker_peer_runs_busybox_and_leaves_nothing(engine: Engine, busybox: str, tmp_path: Path) -> None:
    require_docker()
    # Paths outside our dirs that dockerd would use with the default flags, and a sysctl it sets.
    outside = [*OUTSIDE, "/etc/docker/key.json", "/opt/containerd", "/run/docker.sock"]
    outside_before = {p: os.path.exists(p) for p in outside}
    ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    rootfs = engine.store.layer_dir(engine.images.get(busybox).layer_keys[0]) / "fs"
    workdir = tmp_path / "docker"
    with dockerd(workdir) as peer:
        assert peer.env["DOCKER_HOST"] == f"unix://{peer.sock}"
        assert peer.sock.is_socket()
        assert "20.10" in peer.run("version", "--format", "{{.Server.Version}}").stdout
        peer.load_rootfs(rootfs, "px-busybox")
        out = peer.run("run", "--rm", "--network", "none", "px-busybox", "echo", "hi")
        assert out.stdout == "hi\n"
        # A container left running: the exit must take it down too.
        peer.run("run", "-d", "--network", "none", "px-busybox", "sleep", "3600")
        short, cgroup = peer.short, peer.cgroup

    ours = [str(short), str(workdir)]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert not any(d in cmdline for d in ours), f"process {entry} left: {cmdline!r}"
    with open("/proc/self/mountinfo") as fh:
        mounts = [line for line in fh if any(d in line.split()[4] for d in ours)]
    assert not mounts, f"mounts left: {mounts}"
    assert not short.exists() and not workdir.exists()
    hierarchies = [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]
    assert not [h for h in hierarchies if (h / cgroup).is_dir()], f"cgroup {cgroup} left"
    assert {p: os.path.exists(p) for p in outside} == outside_before
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == ip_forward
