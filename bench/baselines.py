"""Baselines that do pylxcore's work without pylxcore: the unshare+chroot floor,
liblxc through its python bindings by hand, and the ``lxc-*`` commands.

They all use the same busybox root (the base layer of the image the harness
built) and a container config with the same isolation pylxcore writes
(namespaces, autodev, proc/sys/cgroup mounts, capabilities, seccomp, device
cgroup), minus pylxcore's own extras: its log file and its OOM stop hook.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import lxc

# The same capability set pylxcore keeps (Docker's default without MKNOD).
CAPS = (
    "chown dac_override fowner fsetid kill setgid setuid setpcap "
    "net_bind_service net_raw sys_chroot audit_write setfcap"
)
DEVICES = ("c 1:3", "c 1:5", "c 1:7", "c 1:8", "c 1:9", "c 5:0", "c 5:1", "c 5:2", "c 136:*")
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE = "pxbench-base"


def floor_argv(rootfs: Path) -> list[str]:
    """The least work that isolates a process: new namespaces, chroot, exec."""
    return ["unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--ipc", "--mount-proc",
            "chroot", str(rootfs), "/bin/true"]


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.001)


class CgroupHome:
    """The cgroups this process started in.

    On a daemonized ``start()``, liblxc's python bindings move the *calling*
    process into the new container's ``lxc.monitor.NAME`` cgroup (in every
    hierarchy) and leave it there. The harness moves itself back after each
    start, so that what it runs later (pylxcore's containers included) is
    where it would be without this baseline, and those cgroups can be removed.
    """

    def __init__(self) -> None:
        mounts: list[tuple[set[str], str]] = []  # (super options, mount point) of each hierarchy
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] in ("cgroup", "cgroup2"):
                    mounts.append((set(fields[sep + 3].split(",")), fields[4]))
        self.procs_files: list[str] = []
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for options, mnt in mounts:
                    wanted = set(controllers.split(",")) if controllers else set()
                    if (wanted and wanted <= options) or (not wanted and not options - {"rw", "ro"}):
                        self.procs_files.append(os.path.join(mnt, path.lstrip("/"), "cgroup.procs"))
                        break

    def restore(self) -> float:
        """Move this process back; returns the seconds it took (to leave out of liblxc's time)."""
        t0 = time.perf_counter()
        for path in self.procs_files:
            try:
                with open(path, "w") as fh:
                    fh.write(str(os.getpid()))
            except OSError:
                pass
        return time.perf_counter() - t0


class RawLXC:
    """A dir-backed base container over the busybox root, cloned as overlay snapshots.

    liblxc only snapshots a rootfs whose path contains the container's name,
    so the base's ``rootfs`` is a symlink to the busybox layer.
    """

    def __init__(self, lxcpath: Path, rootfs: Path, seccomp: Path | None) -> None:
        self.lxcpath = lxcpath
        self.home = CgroupHome()
        self._n = 0
        base_dir = lxcpath / BASE
        base_dir.mkdir(parents=True)
        (base_dir / "rootfs").symlink_to(rootfs)
        lines = [
            f"lxc.uts.name = {BASE}",
            f"lxc.rootfs.path = dir:{base_dir / 'rootfs'}",
            "lxc.autodev = 1",
            "lxc.tty.max = 0",
            "lxc.pty.max = 64",
            "lxc.mount.auto = proc:mixed sys:ro cgroup:ro",
            "lxc.mount.entry = tmpfs dev/shm tmpfs rw,nosuid,nodev,noexec,mode=1777,size=65536k,create=dir"
            " 0 0",
            f"lxc.cap.keep = {CAPS}",
            "lxc.net.0.type = empty",
            "lxc.signal.halt = SIGTERM",
        ]
        if seccomp is not None:
            if not seccomp.exists():  # a baseline without the profile would flatter itself
                raise FileNotFoundError(f"the seccomp profile {seccomp} is missing")
            lines.append(f"lxc.seccomp.profile = {seccomp}")
        if os.path.isdir("/sys/fs/cgroup/devices"):
            lines.append("lxc.cgroup.devices.deny = a")
            lines += [f"lxc.cgroup.devices.allow = {d} rwm" for d in DEVICES]
        (base_dir / "config").write_text("\n".join(lines) + "\n")
        self.base = lxc.Container(BASE, str(lxcpath))

    def new_name(self, kind: str) -> str:
        self._n += 1
        return f"pxbench-raw-{kind}-{self._n}"

    def clone(self, name: str) -> Any:
        """An overlay snapshot of the base; a fresh handle (the one clone() returns fails to start)."""
        if not self.base.clone(name, flags=lxc.LXC_CLONE_SNAPSHOT, bdevtype="overlay"):
            raise RuntimeError(f"liblxc could not clone {BASE} as {name}")
        return lxc.Container(name, str(self.lxcpath))

    def upper(self, name: str) -> Path:
        return self.lxcpath / name / "overlay" / "delta"

    def start(self, c: Any, argv: tuple[str, ...]) -> float:
        """Start ``c`` running ``argv`` under liblxc's init; returns the seconds spent
        moving this process back to its cgroups (see CgroupHome), not liblxc's work."""
        ok = c.start(useinit=True, cmd=argv)
        moved = self.home.restore()
        if not ok:
            raise RuntimeError(f"liblxc could not start {c.name}")
        return moved

    def run_rm(self) -> float:
        """What ``run(img, ["true"], remove=True)`` does, by hand: clone, start, wait, destroy.
        A Sample: returns the seconds it took."""
        t0 = time.perf_counter()
        c = self.clone(self.new_name("run"))
        moved = self.start(c, ("/bin/true",))
        c.wait("STOPPED", 10)
        if not c.destroy():
            raise RuntimeError(f"liblxc could not destroy {c.name}")
        return time.perf_counter() - t0 - moved

    def start_idle(self) -> tuple[Any, float]:
        """A running clone whose payload sleeps; and the seconds to leave out (see ``start``)."""
        c = self.clone(self.new_name("idle"))
        moved = self.start(c, ("/bin/sleep", "3600"))
        if not c.wait("RUNNING", 10):
            raise RuntimeError(f"{c.name} did not reach RUNNING")
        return c, moved

    @staticmethod
    def attach_true(c: Any) -> None:
        code = c.attach_wait(lxc.attach_run_command, ["true"], env_policy=lxc.LXC_ATTACH_CLEAR_ENV,
                             extra_env_vars=[PATH])
        if code != 0:
            raise RuntimeError(f"attach_wait true in {c.name} returned {code}")

    def stop_sample(self, c: Any, exits: list[float]) -> float:
        """Start ``c`` (its command touches /tmp/ready, then execs sleep), then time
        SIGTERM to that sleep → STOPPED; the bare process exit time goes to ``exits``."""
        ready = self.upper(c.name) / "tmp" / "ready"
        if ready.exists():
            ready.unlink()
        self.start(c, ("/bin/sh", "-c", "touch /tmp/ready; exec sleep 3600"))
        wait_for_file(ready)
        kids = children(c.init_pid)
        if not kids:
            raise RuntimeError(f"no payload process under the init of {c.name}")
        pidfd = os.pidfd_open(kids[0])
        try:
            t0 = time.perf_counter()
            os.kill(kids[0], signal.SIGTERM)
            select.select([pidfd], [], [], 10)
            exits.append(time.perf_counter() - t0)
            if not c.wait("STOPPED", 10):
                raise RuntimeError(f"{c.name} did not stop on SIGTERM")
            return time.perf_counter() - t0
        finally:
            os.close(pidfd)

    @staticmethod
    def destroy(c: Any) -> None:
        if c.running:
            c.stop()
        c.destroy()

    def destroy_all(self) -> None:
        """Every clone; not the base, whose rootfs is a link into pylxcore's store
        (the bench dir's removal takes the link, never what it points to)."""
        for name in lxc.list_containers(config_path=str(self.lxcpath)):
            if name != BASE:
                self.destroy(lxc.Container(name, str(self.lxcpath)))


class LXCTools:
    """The ``lxc-*`` commands on the raw containers' lxcpath."""

    def __init__(self, raw: RawLXC) -> None:
        self.raw = raw
        self.p = str(raw.lxcpath)

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)

    def execute_true(self, name: str) -> None:
        self._run("lxc-execute", "-q", "-P", self.p, "-n", name, "--", "/bin/true")

    def run_rm(self) -> None:
        """copy (overlay snapshot) + execute + destroy: the same work as run --rm."""
        name = self.raw.new_name("cli")
        self._run("lxc-copy", "-q", "-P", self.p, "-n", BASE, "-N", name, "-s", "-B", "overlay")
        self.execute_true(name)
        self._run("lxc-destroy", "-q", "-P", self.p, "-n", name)

    def attach_true(self, name: str) -> None:
        self._run("lxc-attach", "-q", "-P", self.p, "-n", name, "--clear-env", "--", "/bin/true")
