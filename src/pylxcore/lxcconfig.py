"""Render the liblxc config of a build step or a container. Pure text.

We write every config from scratch instead of including the distribution's
``common.conf``: that file pulls in an lxcfs post-stop hook that sleeps 0.5 s
on every stop, and its defaults are weaker than Docker's (see docs/security.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence

import attrs

from .limits import CgroupLayout, cgroup_keys
from .spec import Limits, Mount

# Docker's default capability set, without MKNOD: device nodes have no use in
# an application container and a block-device mknod is a classic first step out.
DEFAULT_CAPS = (
    "chown dac_override fowner fsetid kill setgid setuid setpcap "
    "net_bind_service net_raw sys_chroot audit_write setfcap"
)

SECCOMP_PROFILE = Path(__file__).parent / "data" / "seccomp.profile"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# (type, major, minor) of the devices a container may use: the same list as Docker.
ALLOWED_DEVICES = (
    ("c", "1", "3"),  # null
    ("c", "1", "5"),  # zero
    ("c", "1", "7"),  # full
    ("c", "1", "8"),  # random
    ("c", "1", "9"),  # urandom
    ("c", "5", "0"),  # tty
    ("c", "5", "1"),  # console
    ("c", "5", "2"),  # ptmx
    ("c", "136", "*"),  # pts
)


# Docker's masked and read-only paths (moby's oci/defaults.go), which liblxc's
# proc:mixed/sys:ro leave open: without them root in a container could, e.g.,
# rewrite the host's IRQ affinities through /proc/irq or list keys in /proc/keys.
MASKED_FILES = (
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
)
MASKED_DIRS = ("proc/acpi", "proc/asound", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap")
READ_ONLY_DIRS = ("proc/bus", "proc/fs", "proc/irq")


@attrs.frozen
class RunConfig:
    """Everything liblxc needs to know to run one container or build step."""

    name: str  # the LXC container name (also the hostname)
    rootfs: str  # value of lxc.rootfs.path, e.g. "overlay:L1:L2:UPPER"
    cgroup_dir: str  # a unique cgroup directory name (ours, so clearly named)
    env: Sequence[tuple[str, str]] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    network: Literal["none", "host"] = "none"
    mounts: Sequence[Mount] = ()
    limits: Limits = Limits()
    resolv_conf: bool = False  # bind the host's resolv.conf (build steps on the host network)
    # (uid start, uid count, gid start, gid count) on the host for container
    # ids 0.. in a user namespace; None: container root is host root.
    idmap: tuple[int, int, int, int] | None = None


def _fstab_escape(path: str) -> str:
    # fstab-style fields are split on white space; octal escapes keep paths whole.
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def render(cfg: RunConfig, layout: CgroupLayout) -> str:
    """The config file text. Raises LimitError for limits the host cannot enforce."""
    lines: list[tuple[str, str]] = [
        ("lxc.uts.name", cfg.name),
        ("lxc.rootfs.path", cfg.rootfs),
        ("lxc.autodev", "1"),
        ("lxc.tty.max", "0"),
        ("lxc.pty.max", "64"),
        # /proc/sys, /proc/sysrq-trigger etc. read-only; /sys read-only; the
        # container's own cgroups visible but read-only (no release_agent games).
        ("lxc.mount.auto", "proc:mixed sys:ro cgroup:ro"),
        (
            "lxc.mount.entry",
            "tmpfs dev/shm tmpfs rw,nosuid,nodev,noexec,mode=1777,size=65536k,create=dir 0 0",
        ),
        ("lxc.cap.keep", DEFAULT_CAPS),
        ("lxc.seccomp.profile", str(SECCOMP_PROFILE)),
        ("lxc.cgroup.dir.container", cfg.cgroup_dir),
        ("lxc.cgroup.dir.monitor", cfg.cgroup_dir + ".monitor"),
        ("lxc.init.cwd", cfg.cwd),
        ("lxc.init.uid", str(cfg.uid)),
        ("lxc.init.gid", str(cfg.gid)),
        ("lxc.signal.halt", "SIGTERM"),
        ("lxc.ephemeral", "0"),
    ]
    # "optional": a path this kernel does not have is simply not there to hide.
    lines += [("lxc.mount.entry", f"/dev/null {p} none bind,optional 0 0") for p in MASKED_FILES]
    lines += [
        ("lxc.mount.entry", f"tmpfs {p} tmpfs ro,nosuid,nodev,noexec,optional 0 0") for p in MASKED_DIRS
    ]
    lines += [("lxc.mount.entry", f"/{p} {p} none bind,ro,optional 0 0") for p in READ_ONLY_DIRS]
    devices = layout.version("devices")
    if devices == "v1":
        lines.append(("lxc.cgroup.devices.deny", "a"))
        lines += [("lxc.cgroup.devices.allow", f"{t} {ma}:{mi} rwm") for t, ma, mi in ALLOWED_DEVICES]
    elif devices == "v2":
        lines.append(("lxc.cgroup2.devices.deny", "a"))
        lines += [("lxc.cgroup2.devices.allow", f"{t} {ma}:{mi} rwm") for t, ma, mi in ALLOWED_DEVICES]
    if cfg.network == "host":
        lines.append(("lxc.net.0.type", "none"))  # "none" in liblxc means: share the host's netns
    else:
        lines.append(("lxc.net.0.type", "empty"))  # a new netns with only loopback
    env = dict(cfg.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", cfg.name)
    env.setdefault("HOME", "/root" if cfg.uid == 0 else "/")
    for key, value in env.items():
        if "\n" in value:
            # liblxc's config is line based; there is no escape for a newline.
            raise ValueError(f"environment value of {key} contains a newline, which liblxc cannot carry")
        lines.append(("lxc.environment", f"{key}={value}"))
    if cfg.resolv_conf and os.path.exists("/etc/resolv.conf"):
        lines.append(("lxc.mount.entry", "/etc/resolv.conf etc/resolv.conf none bind,ro,optional 0 0"))
    for m in cfg.mounts:
        kind = "dir" if os.path.isdir(m.source) else "file"
        opts = f"bind,create={kind}" + (",ro" if m.read_only else "")
        target = _fstab_escape(m.target.lstrip("/"))
        lines.append(("lxc.mount.entry", f"{_fstab_escape(m.source)} {target} none {opts} 0 0"))
    if cfg.idmap is not None:
        ustart, ucount, gstart, gcount = cfg.idmap
        lines.append(("lxc.idmap", f"u 0 {ustart} {ucount}"))
        lines.append(("lxc.idmap", f"g 0 {gstart} {gcount}"))
    lines += cgroup_keys(cfg.limits, layout)
    return "".join(f"{k} = {v}\n" for k, v in lines)
