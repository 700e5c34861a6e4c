"""Other engines to compare pylxcore with, each on private state of its own.

``dockerd(workdir)`` starts Debian's Docker 20.10 (package ``docker.io``) next
to whatever else runs on the machine, and leaves nothing behind:

* its own containerd, started by us and handed over with ``--containerd``.
  dockerd would start a "managed" containerd itself, but only when
  ``/run/containerd/containerd.sock`` is absent: with a system containerd
  running it would silently use that one (and its "moby" namespace). Our
  containerd reads a config of ours, not ``/etc/containerd/config.toml``, and
  has the ``opt`` plugin off (it creates ``/opt/containerd``) and ``cri`` off
  (Kubernetes' API, which opens a streaming port);
* every path under two dirs: ``workdir`` (data root, containerd's root, logs,
  configs) and a short ``/tmp/pxd-*`` dir for the unix sockets and the exec
  root, since a socket path must fit in 108 bytes. ``--config-file`` and
  ``deprecated-key-path`` keep dockerd away from ``/etc/docker``;
* no host networking: ``--bridge=none`` (containers run with ``--network
  none``), no iptables rules, and ``--ip-forward=false`` so that the host's
  ``net.ipv4.ip_forward`` is left as it is;
* cgroups: the cgroupfs driver, said explicitly so that a systemd host (where
  the systemd driver would want a ``.slice`` parent and D-Bus) behaves as a
  container without systemd does, under a ``--cgroup-parent`` of its own,
  removed at the end. This host's hybrid layout (cgroup v1 hierarchies plus a
  cgroup2 ``unified`` mount) needs nothing more: unlike podman's crun,
  Debian's runc handles it, and containers inherit usable ulimits (nofile
  20000 here), so no ``--ulimit`` either.

Two things land outside those dirs whatever the flags, and are removed when
we made them: containerd's shims put their sockets in ``/run/containerd/s/``
(named by a hash of our containerd's address, so no clash), and dockerd
creates ``/run/docker/plugins``.

Used by the tests (``from tests.peers import dockerd``) and by the benchmark
harness (which puts the repository root on ``sys.path``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

# Debian's binaries first: a newer docker CLI may sit earlier on PATH (in
# /usr/local/bin), and the peer is meant to be Docker 20.10, CLI included.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_HINT = "apt-get install -y docker.io"
# Directories outside ours that dockerd or containerd's shims create whatever
# the flags; removed at the end when they did not exist before and are empty.
OUTSIDE = ("/run/containerd/s", "/run/containerd", "/run/docker/plugins", "/run/docker")


class PeerError(RuntimeError):
    """The peer could not start, a command failed, or its cleanup left something."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH) or shutil.which(name)


def docker_missing() -> str | None:
    """Why the Docker peer cannot run here (a missing binary), or None."""
    missing = [n for n in ("dockerd", "containerd", "docker", "runc") if _which(n) is None]
    return f"needs {', '.join(missing)} ({INSTALL_HINT})" if missing else None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _mounts_under(dirs: list[Path]) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4].replace("\\040", " ") for line in fh]
    return [m for m in points if any(m == str(d) or m.startswith(f"{d}/") for d in dirs)]


def _pids_mentioning(needles: list[str]) -> list[int]:
    """Processes whose command line names one of ``needles`` (our dirs, our sockets)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            found.append(int(entry))
    return found


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL; always reaps it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


class DockerPeer:
    """A running dockerd of our own. Start it with ``dockerd(workdir)``.

    ``sock`` is its API socket, ``env`` the environment for a ``docker`` CLI
    that must talk to this daemon only, ``docker`` that CLI (Debian's).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        # A short dir of our own for the sockets (the exec root holds some too).
        self.short = Path(tempfile.mkdtemp(prefix="pxd-", dir="/tmp"))
        self.sock = self.short / "docker.sock"
        self.containerd_sock = self.short / "containerd.sock"
        self.cgroup = f"pxpeer-{self.short.name.removeprefix('pxd-')}"
        self.docker = _which("docker") or "docker"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        # DOCKER_CONFIG keeps the CLI away from ~/.docker (contexts, credentials).
        self.env = {**env, "DOCKER_HOST": f"unix://{self.sock}",
                    "DOCKER_CONFIG": str(workdir / "cli-config")}
        self._existed = {p: os.path.exists(p) for p in OUTSIDE}
        self._containerd: subprocess.Popen[bytes] | None = None
        self._dockerd: subprocess.Popen[bytes] | None = None
        # A network namespace (its /run/netns name) dockerd runs in, and its
        # networking flags: the bench's network case gives dockerd its bridge,
        # iptables and docker-proxy there, where they cannot touch the host's.
        self.netns: str | None = None
        self.network_flags = ["--bridge=none", "--iptables=false", "--ip6tables=false",
                              "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false"]

    # -- the docker CLI ------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this daemon; raises PeerError on a non-zero exit when ``check``."""
        proc = subprocess.run([self.docker, *args], env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise PeerError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def load_rootfs(self, rootfs: Path, name: str) -> None:
        """Import a root filesystem dir as image ``name`` (``tar -C ROOT -c . | docker import - NAME``)."""
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            imp = subprocess.run([self.docker, "import", "-", name], stdin=tar.stdout, env=self.env,
                                 capture_output=True, text=True, timeout=300, check=False)
        if tar.returncode != 0 or imp.returncode != 0:
            raise PeerError(f"importing {rootfs} as {name}: tar exited {tar.returncode}, "
                            f"docker import exited {imp.returncode}: {imp.stderr.strip()}")

    # -- start and stop ------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Start containerd, then dockerd; return once ``docker version`` answers."""
        why = docker_missing()
        if why:
            raise PeerError(why)
        w, s = self.workdir, self.short
        for path in (self.sock, self.containerd_sock):
            if len(str(path)) >= 100:
                raise PeerError(f"socket path too long for a unix socket: {path}")
        w.mkdir(parents=True, exist_ok=True)
        (w / "cli-config").mkdir(exist_ok=True)
        (w / "containerd.toml").write_text("\n".join([
            "version = 2",
            f'root = "{w}/containerd"',
            f'state = "{s}/containerd"',
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]',
            "[grpc]",
            f'  address = "{self.containerd_sock}"',
            "",
        ]))
        (w / "daemon.json").write_text(json.dumps({"deprecated-key-path": f"{w}/key.json"}))
        # Daemons in sessions of their own: a Ctrl-C meant for the caller must not
        # kill them before the cleanup below has removed their containers.
        with open(w / "containerd.log", "wb") as log:
            self._containerd = subprocess.Popen(
                [_which("containerd") or "containerd", "--config", str(w / "containerd.toml"),
                 "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait(lambda: self.containerd_sock.exists(), self._containerd, w / "containerd.log",
                   "containerd's socket", timeout)
        with open(w / "dockerd.log", "wb") as log:
            enter = [] if self.netns is None else ["nsenter", f"--net=/run/netns/{self.netns}"]
            self._dockerd = subprocess.Popen(
                [*enter, _which("dockerd") or "dockerd",
                 "--config-file", str(w / "daemon.json"),
                 "--data-root", str(w / "data"),
                 "--exec-root", str(s / "exec"),
                 "--pidfile", str(w / "docker.pid"),
                 "-H", f"unix://{self.sock}",
                 "--containerd", str(self.containerd_sock),
                 *self.network_flags,
                 "--exec-opt", "native.cgroupdriver=cgroupfs",
                 "--cgroup-parent", f"/{self.cgroup}",
                 # On exit dockerd stops running containers; waiting 15 s for
                 # each (the default) buys nothing here.
                 "--shutdown-timeout", "2",
                 "--log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PATH": f"{SYSTEM_PATH}:{os.environ.get('PATH', '')}"})

        def answers() -> bool:
            return self.sock.exists() and self.run("version", check=False, timeout=30).returncode == 0

        self._wait(answers, self._dockerd, w / "dockerd.log", "dockerd to answer `docker version`", timeout)

    @staticmethod
    def _wait(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str,
              timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise PeerError(f"{log.stem} exited {proc.returncode} before {what}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise PeerError(f"timed out after {timeout:g}s waiting for {what}:\n{_tail(log)}")
            time.sleep(0.05)

    def close(self) -> list[str]:
        """Stop everything, remove everything; returns what could not be removed (empty: all gone)."""
        if self._dockerd is not None and self._dockerd.poll() is None:
            # Containers first, killed: a clean dockerd exit then has nothing to wait for.
            try:
                ids = self.run("ps", "-aq", check=False, timeout=30).stdout.split()
                if ids:
                    self.run("rm", "--force", *ids, check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass  # a stuck daemon: what it leaves is killed below
        if self._dockerd is not None:
            _stop(self._dockerd, 30)
        if self._containerd is not None:
            _stop(self._containerd, 15)
        # What is still alive now outlived its daemons (a shim whose container
        # was not removed): it names our dirs in its command line, or lives in
        # our cgroups.
        ours = [f"{self.short}/", f"{self.workdir}/"]
        strays = set(_pids_mentioning(ours)) | set(self._cgroup_pids())
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        problems = self._wait_gone(ours, 10)
        for m in sorted(_mounts_under([self.short, self.workdir]), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        problems += self._remove_cgroups()
        self._remove_shim_sockets()
        left = _mounts_under([self.short, self.workdir])
        if left:
            # Never rmtree through a mount: it would delete inside what is mounted there.
            problems += [f"mount {m}" for m in left]
        else:
            shutil.rmtree(self.short, ignore_errors=True)
            shutil.rmtree(self.workdir, ignore_errors=True)
            problems += [f"dir {d}" for d in (self.short, self.workdir) if d.exists()]
        for path, existed in self._existed.items():
            if not existed and os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass  # not empty: someone else's now
        self._dockerd = self._containerd = None
        return problems

    def _remove_shim_sockets(self) -> None:
        """A shim killed with its container leaves its socket in /run/containerd/s, named
        by the sha256 of "CONTAINERD_ADDRESS/NAMESPACE/ID" (containerd 1.6's SocketAddress)."""
        try:
            ids = os.listdir(self.workdir / "data" / "containers")
        except OSError:
            return
        for cid in ids:
            digest = hashlib.sha256(f"{self.containerd_sock}/moby/{cid}".encode()).hexdigest()
            try:
                os.unlink(f"/run/containerd/s/{digest}")
            except OSError:
                pass

    def _cgroup_dirs(self) -> list[str]:
        """Our cgroup parent in every hierarchy (cgroup v1 controllers, unified, or a v2-only root)."""
        bases = ["/sys/fs/cgroup"] + [str(p) for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()]
        return [os.path.join(b, self.cgroup) for b in bases if os.path.isdir(os.path.join(b, self.cgroup))]

    def _cgroup_pids(self) -> list[int]:
        pids = []
        for top in self._cgroup_dirs():
            for dirpath, _, files in os.walk(top):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                            pids += [int(x) for x in fh.read().split()]
                    except OSError:
                        pass
        return pids

    def _wait_gone(self, ours: list[str], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            alive = set(_pids_mentioning(ours)) | set(self._cgroup_pids())
            if not alive:
                return []
            if time.monotonic() > deadline:
                return [f"process {pid} still running" for pid in sorted(alive)]
            time.sleep(0.05)

    def _remove_cgroups(self) -> list[str]:
        """rmdir deepest first; retried briefly, as a cgroup empties a moment after its last process."""
        pending = [d for top in self._cgroup_dirs() for d, _, _ in os.walk(top)]
        pending.sort(key=len, reverse=True)
        deadline = time.monotonic() + 5
        while True:
            failed = []
            for d in pending:
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    failed.append(d)
            if not failed or time.monotonic() > deadline:
                return [f"cgroup {d}" for d in failed]
            pending = failed
            time.sleep(0.05)


@contextmanager
def dockerd(workdir: Path) -> Iterator[DockerPeer]:
    """A dockerd of our own (see the module's doc); ``workdir`` is the peer's alone
    (created if missing, deleted at the end). Raises PeerError when dockerd is
    missing or does not start, and at the end when something could not be removed."""
    peer = DockerPeer(workdir)
    try:
        peer.start()
        yield peer
    except BaseException:
        problems = peer.close()
        if problems:
            print(f"docker peer left behind: {problems}", file=sys.stderr)
        raise
    problems = peer.close()
    if problems:
        raise PeerError(f"docker peer left behind: {problems}")
