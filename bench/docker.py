"""Docker 20.10 (Debian's ``docker.io``) as a baseline, through the peer of ``tests/peers.py``.

That peer is a dockerd of our own with its own containerd, data root, exec
root and sockets, no bridge, no iptables rules, cgroupfs under a cgroup
parent of its own; see that module for why each flag. The harness starts it
the first time a case asks for it (``ready()``), imports the same busybox
root as the other contenders, and stops it (by pid) at the end. Every
container runs with ``--network none``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# tests/peers.py is shared with the tests: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.peers import DockerPeer, docker_missing

IMAGE = "pxbench-busybox"


class Docker:
    def __init__(self, bench_dir: Path, rootfs: Path) -> None:
        self.dir = bench_dir / "docker"
        self.rootfs = rootfs
        self.peer: DockerPeer | None = None
        self.reason: str | None = None  # why docker cannot be measured, once we know it cannot
        self.version = "not started"

    def ready(self) -> bool:
        """Start the daemon and import the busybox root, once; False (and ``reason``) if that fails."""
        if self.peer is not None or self.reason:
            return self.reason is None
        self.reason = docker_missing()
        if self.reason:
            return False
        self.peer = self.make_peer()
        try:
            self.peer.start()
            self.peer.load_rootfs(self.rootfs, IMAGE)
            self.run_rm()
            fmt = "dockerd {{.Server.Version}}, CLI {{.Client.Version}}"
            self.version = f"{self.peer.run('version', '--format', fmt).stdout.strip()} ({self.peer.docker})"
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:  # PeerError is one
            self.reason = f"docker cannot run here: {err}"
        return self.reason is None

    def make_peer(self) -> DockerPeer:
        """The peer ``ready()`` starts (bench/network_case.py gives it a network namespace)."""
        return DockerPeer(self.dir)

    def argv(self, *args: str) -> list[str]:
        assert self.peer is not None
        return [self.peer.docker, *args]

    def run(self, *args: str, buildkit: bool = False) -> None:
        """``docker ARGS``, whole process, output discarded; RuntimeError on failure."""
        assert self.peer is not None
        # Docker 20.10's CLI uses the legacy builder unless told otherwise: say which.
        env = {**self.peer.env, "DOCKER_BUILDKIT": "1" if buildkit else "0"}
        proc = subprocess.run(self.argv(*args), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"docker {args[0]} failed (exit {proc.returncode}): {err[-1] if err else ''}")

    def run_rm(self) -> None:
        self.run("run", "--rm", "--network", "none", IMAGE, "true")

    def start_idle(self) -> None:
        self.run("run", "-d", "--network", "none", IMAGE, "sleep", "3600")

    def ps(self) -> None:
        self.run("ps")

    def build(self, context: Path, tag: str, buildkit: bool = False) -> None:
        self.run("build", "--network", "none", "-t", tag, str(context), buildkit=buildkit)

    def remove_containers(self) -> None:
        assert self.peer is not None
        ids = self.peer.run("ps", "-aq").stdout.split()
        if ids:
            self.peer.run("rm", "--force", *ids)

    def cleanup(self) -> None:
        """Stop the daemon (by pid), remove all it made; RuntimeError listing what stayed."""
        if self.peer is None:
            return
        problems = self.peer.close()
        self.peer = None
        if problems:
            raise RuntimeError("; ".join(problems))


def dockerfile(layers: list[str]) -> str:
    return "\n".join([f"FROM {IMAGE}", *(f"RUN {script}" for script in layers)]) + "\n"
