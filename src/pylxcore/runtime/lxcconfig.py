"""Render the liblxc config of a build step or a container. Pure text.

We write every config from scratch instead of including the distribution's
``common.conf``: that file pulls in an lxcfs post-stop hook that sleeps 0.5 s
on every stop, and its defaults are weaker than Docker's (see docs/security.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Mapping, Sequence

import attrs

from pylxcore.errors import SpecError
from pylxcore.runtime.limits import LIMIT_FILES, CgroupLayout, cgroup_keys
from pylxcore.spec import Limits, Mount
from pylxcore.spec.validate import has_control_chars

# Docker's default capability set, without MKNOD: device nodes have no use in
# an application container and a block-device mknod is a classic first step out.
DEFAULT_CAPS = (
    "chown dac_override fowner fsetid kill setgid setuid setpcap "
    "net_bind_service net_raw sys_chroot audit_write setfcap"
)

SECCOMP_PROFILE = Path(__file__).parent / "data" / "seccomp.profile"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What glibc's dynamic loader and libc read from the environment of a program
# (glibc's "unsecure envvars", which it ignores only in setuid programs),
# locale and time zone, and what liblxc itself looks at (PATH for newuidmap,
# HOME, XDG_*, LXC_*): see split_env.
HOST_LOADER_ENV = frozenset(
    "GCONV_PATH GETCONF_DIR HOSTALIASES LOCALDOMAIN LOCPATH NIS_PATH NLSPATH RESOLV_HOST_CONF"
    " RES_OPTIONS TMPDIR TZ TZDIR LANG LANGUAGE PATH HOME".split()
)
HOST_LOADER_PREFIXES = ("LD_", "MALLOC_", "GLIBC_", "LC_", "LXC_", "XDG_")

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
class Nic:
    """A veth into one of the library's bridges (see pylxcore.network)."""

    link: str  # the bridge
    address: str  # "10.89.0.2/24"
    gateway: str | None  # the default route (first nic only; None: an internal network's)
    pair: str  # the host side's name, so that the library can tell its own veths
    # The network namespace file the library makes for the container, its
    # veths in it (pylxcore.network.netns); "": liblxc makes them.
    netns: str = ""


def render_nics(nics: Sequence[Nic], *, own_netns: bool = True) -> list[tuple[str, str]]:
    """The lines of a container's veths: with ``own_netns`` and a namespace
    file in ``nics``, the container joins that namespace, which the library
    makes before it starts (then liblxc creates and deletes no link; see
    pylxcore.network.netns); else ``lxc.net.N.*`` lines, liblxc's veths.
    (A container in a user namespace keeps liblxc's: a namespace the library
    made would be owned by the host's user namespace, not the container's.)"""
    if own_netns and nics and nics[0].netns:
        return [("lxc.namespace.share.net", nics[0].netns)]
    lines: list[tuple[str, str]] = []
    for i, nic in enumerate(nics):
        k = f"lxc.net.{i}"
        lines += [
            (f"{k}.type", "veth"),
            (f"{k}.link", nic.link),
            (f"{k}.flags", "up"),
            (f"{k}.name", f"eth{i}"),
            (f"{k}.veth.pair", nic.pair),
            (f"{k}.ipv4.address", nic.address),
        ]
        if nic.gateway and i == 0:
            lines.append((f"{k}.ipv4.gateway", nic.gateway))
    return lines


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
    nics: Sequence[Nic] = ()  # with network "none": veths into the library's bridges
    hostname: str | None = None  # None: the name
    mounts: Sequence[Mount] = ()
    limits: Limits = Limits()
    resolv_conf: bool = False  # bind the host's resolv.conf (build steps on the host network)
    # (uid start, uid count, gid start, gid count) on the host for container
    # ids 0.. in a user namespace; None: container root is host root.
    idmap: tuple[int, int, int, int] | None = None
    read_only: bool = False  # the root filesystem read-only (``docker run --read-only``)
    # (target, options) of tmpfs mounts, each target already made and resolved
    # inside the root (as the mounts' are): ``docker run --tmpfs``.
    tmpfs: Sequence[tuple[str, str]] = ()


def _fstab_escape(path: str) -> str:
    # fstab-style fields are split on white space; octal escapes keep paths whole.
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def render(cfg: RunConfig, layout: CgroupLayout) -> str:
    """The config file text, without the variables ``split_env`` leaves to
    lxc-execute's environment.

    Raises LimitError for limits the host cannot enforce, SpecError for a
    value no config line can carry exactly (a control character anywhere).
    """
    lines: list[tuple[str, str]] = [
        ("lxc.uts.name", cfg.hostname or cfg.name),
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
    elif cfg.nics:
        lines += render_nics(cfg.nics, own_netns=cfg.idmap is None)
    else:
        lines.append(("lxc.net.0.type", "empty"))  # a new netns with only loopback
    config_env, _ = split_env(container_env(cfg.env, cfg.hostname or cfg.name, cfg.uid))
    lines += [("lxc.environment", f"{key}={value}") for key, value in config_env]
    if cfg.resolv_conf and os.path.exists("/etc/resolv.conf"):
        lines.append(("lxc.mount.entry", "/etc/resolv.conf etc/resolv.conf none bind,ro,optional 0 0"))
    for m in cfg.mounts:
        # No "create=": liblxc would mkdir the target following the image's
        # symlinks, onto the host. The library has made the target already,
        # resolved inside the container's root (containers.create).
        opts = "bind" + (",ro" if m.read_only else "")
        target = _fstab_escape(m.target.lstrip("/"))
        lines.append(("lxc.mount.entry", f"{_fstab_escape(m.source)} {target} none {opts} 0 0"))
    if cfg.read_only:
        lines.append(("lxc.rootfs.options", "ro"))
    for target, options in cfg.tmpfs:
        # Docker's defaults, then the caller's (a later "exec" wins over "noexec").
        opts = ",".join(filter(None, ["rw,nosuid,nodev,noexec", options]))
        lines.append(("lxc.mount.entry", f"tmpfs {_fstab_escape(target.lstrip('/'))} tmpfs {opts} 0 0"))
    if cfg.idmap is not None:
        ustart, ucount, gstart, gcount = cfg.idmap
        lines.append(("lxc.idmap", f"u 0 {ustart} {ucount}"))
        lines.append(("lxc.idmap", f"g 0 {gstart} {gcount}"))
    lines += cgroup_keys(cfg.limits, layout)
    for key, value in lines:
        if not carried_exactly(value):
            # Every field was validated before it got here; this is the last
            # wall, so that no value can ever add a line of its own.
            raise SpecError(f"refusing to write {value!r} into liblxc's config", key=key)
    return "".join(f"{k} = {v}\n" for k, v in lines)


def with_limits(text: str, limits: Limits, layout: CgroupLayout) -> str:
    """The config ``text`` (as ``render`` wrote it) with its limit lines
    replaced by those of ``limits``: what a container's next start runs
    with after ``update``. Raises LimitError (a limit the host cannot
    enforce)."""
    keys = cgroup_keys(limits, layout)
    kept = []
    for line in text.splitlines(keepends=True):
        key = line.partition(" = ")[0]
        file = key.removeprefix("lxc.cgroup2.").removeprefix("lxc.cgroup.")
        if file == key or file not in LIMIT_FILES:
            kept.append(line)
    return "".join(kept) + "".join(f"{k} = {v}\n" for k, v in keys)


def carried_exactly(value: str) -> bool:
    """Whether a config line carries ``value`` byte-exact: liblxc splits lines
    at control characters and trims white space at the ends."""
    return not has_control_chars(value) and value == value.strip(" ")


def container_env(env: Sequence[tuple[str, str]], name: str, uid: int) -> dict[str, str]:
    """A container's (or build step's) environment: ``env`` over the defaults."""
    out = dict(env)
    out.setdefault("PATH", DEFAULT_PATH)
    out.setdefault("HOSTNAME", name)
    out.setdefault("HOME", "/root" if uid == 0 else "/")
    return out


def split_env(env: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(the variables written as config lines, the ones that cannot be).

    A value that a config line cannot carry exactly (a newline in a PEM key, a
    trailing space) reaches the container through ``lxc-execute``'s own
    environment instead: ``execute_argv(inherit=names)`` tells liblxc to take
    those names from there (``lxc.environment = NAME``). That process runs as
    host root before anything is confined, so variables its dynamic loader or
    libc read (``LD_PRELOAD``, ``GCONV_PATH``…) can never travel that way:
    SpecError, naming the variable.
    """
    in_config, inherited = [], []
    for key, value in sorted(env.items()):
        if carried_exactly(value):
            in_config.append((key, value))
        elif key in HOST_LOADER_ENV or key.startswith(HOST_LOADER_PREFIXES):
            raise SpecError(
                f"the value of {key} holds a control character or ends with a space; {key} is read by the"
                " host's loader or libc when the container starts, so such a value is refused",
                key=f"env.{key}",
            )
        else:
            inherited.append((key, value))
    return in_config, inherited
