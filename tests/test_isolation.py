"""Isolation on real liblxc (SPEC.md section 3, "Security defaults"): what a
root process inside a default container must not be able to do to the host,
tried both as the container's main process and through ``exec`` (which
liblxc sets up separately), plus namespaces: hostname, network, pids, files.

Every attempt is harmless if the protection were missing: values written are
the ones already there, the clock is "set" to the current time, a module is
garbage, a device is only read from.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path
from typing import Callable

import pytest

from pylxcore import Engine
from pylxcore.runtime.container import Container
from pylxcore.runtime.exec import ExecResult
from pylxcore.runtime.liblxc import tool

SLEEPER = ["sleep", "3600"]

# Docker's default capabilities (moby's oci/caps/defaults.go) minus MKNOD: the
# most any process in a default container may hold, effective or bounding.
CAP_NUMBERS = {
    "chown": 0,
    "dac_override": 1,
    "fowner": 3,
    "fsetid": 4,
    "kill": 5,
    "setgid": 6,
    "setuid": 7,
    "setpcap": 8,
    "net_bind_service": 10,
    "net_raw": 13,
    "sys_chroot": 18,
    "audit_write": 29,
    "setfcap": 31,
}
ALLOWED_CAPS = sum(1 << n for n in CAP_NUMBERS.values())
DANGEROUS_CAPS = {
    "dac_read_search": 2,
    "linux_immutable": 9,
    "net_admin": 12,
    "ipc_lock": 14,
    "sys_module": 16,
    "sys_rawio": 17,
    "sys_ptrace": 19,
    "sys_admin": 21,
    "sys_boot": 22,
    "sys_nice": 23,
    "sys_resource": 24,
    "sys_time": 25,
    "mknod": 27,
    "mac_override": 32,
    "mac_admin": 33,
    "syslog": 34,
    "perfmon": 38,
    "bpf": 39,
}


def host_disk() -> tuple[str, int, int]:
    """(name, major, minor) of a real block device of this host (the first in
    /proc/partitions that is not a loop, ram or zram device)."""
    for line in Path("/proc/partitions").read_text().splitlines()[2:]:
        major, minor, _, name = line.split()
        if not name.startswith(("loop", "ram", "zram")):
            return name, int(major), int(minor)
    return "sda", 8, 0


def writable_sysfs_attribute() -> str:
    for candidate in (
        "/sys/kernel/mm/ksm/run",
        "/sys/kernel/mm/transparent_hugepage/khugepaged/defrag",
        "/sys/module/printk/parameters/time",
        "/sys/kernel/profiling",
    ):
        if os.path.exists(candidate):
            return candidate
    pytest.fail("no known writable sysfs attribute on this host")


DISK, DISK_MAJOR, DISK_MINOR = host_disk()

# name -> (shell script run as root inside, how its failure must show)
ATTEMPTS: dict[str, tuple[str, Callable[[ExecResult], bool]]] = {
    "mknod_block_device": (
        "mknod /tmp/sda b 8 0; r=$?; test -e /tmp/sda && echo CREATED; exit $r",
        lambda r: r.exit_code != 0 and b"CREATED" not in r.stdout and b"not permitted" in r.stderr,
    ),
    "mknod_host_disk": (
        f"mknod /tmp/{DISK} b {DISK_MAJOR} {DISK_MINOR} && head -c 512 /tmp/{DISK} | wc -c",
        lambda r: r.exit_code != 0 and b"not permitted" in r.stderr,
    ),
    "no_host_disk_in_dev": (
        "ls /dev /dev/pts",
        lambda r: (
            r.exit_code == 0
            and not {"sda", "vda", "hda", "xvda", "nvme0n1", "mem", "kmem", "port", DISK}
            & set(r.stdout.decode().split())
        ),
    ),
    "mount_tmpfs": (
        "mkdir -p /mnt && mount -t tmpfs x /mnt; r=$?;"
        " grep -q ' /mnt ' /proc/mounts && echo MOUNTED; exit $r",
        lambda r: r.exit_code != 0 and b"MOUNTED" not in r.stdout,
    ),
    "remount_root_elsewhere": (
        "mkdir -p /mnt && mount --bind / /mnt",
        lambda r: r.exit_code != 0,
    ),
    "load_kernel_module": (
        # A garbage module: the kernel would say "invalid module format" if it were asked.
        "echo junk > /tmp/x.ko && insmod /tmp/x.ko",
        lambda r: r.exit_code != 0 and b"Operation not permitted" in r.stderr,
    ),
    "proc_sys_kernel_hostname": (
        "echo evil > /proc/sys/kernel/hostname",
        lambda r: r.exit_code != 0 and b"Read-only file system" in r.stderr,
    ),
    "proc_sys_kernel_panic": (
        "cat /proc/sys/kernel/panic > /tmp/v && cat /tmp/v > /proc/sys/kernel/panic",
        lambda r: r.exit_code != 0 and b"Read-only file system" in r.stderr,
    ),
    "proc_sys_vm": (
        "cat /proc/sys/vm/swappiness > /tmp/v && cat /tmp/v > /proc/sys/vm/swappiness",
        lambda r: r.exit_code != 0,
    ),
    "proc_irq_affinity": (
        # host-wide: root in a container must not steer the host's interrupts
        "cat /proc/irq/default_smp_affinity > /tmp/v && cat /tmp/v > /proc/irq/default_smp_affinity",
        lambda r: r.exit_code != 0 and b"Read-only file system" in r.stderr,
    ),
    "host_kernel_info_masked": (
        # Docker's masked paths: empty (or absent) instead of the host's data
        "for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug;"
        " do head -c 64 $f 2>/dev/null; done;"
        " for d in /sys/firmware /proc/acpi /proc/scsi /proc/asound; do ls -A $d 2>/dev/null; done",
        lambda r: r.stdout == b"",
    ),
    "proc_sysrq_trigger": (
        # "h" only prints help to the kernel log, should it get through
        "echo h > /proc/sysrq-trigger",
        lambda r: r.exit_code != 0,
    ),
    "set_host_time": (
        # busybox date reports the failure but exits 0: the message is the proof
        'date -s "$(date "+%Y-%m-%d %H:%M:%S")"',
        lambda r: b"can't set date: Operation not permitted" in r.stderr,
    ),
    "sethostname": (
        "hostname evil",
        lambda r: r.exit_code != 0 and b"not permitted" in r.stderr,
    ),
    "write_sys": (
        f"cat {writable_sysfs_attribute()} > /tmp/v && cat /tmp/v > {writable_sysfs_attribute()}",
        lambda r: r.exit_code != 0 and b"Read-only file system" in r.stderr,
    ),
    "create_in_sys": (
        "touch /sys/pwned",
        lambda r: r.exit_code != 0,
    ),
    "raise_own_cgroup_limit": (
        "echo max > /sys/fs/cgroup/pids/pids.max",
        lambda r: r.exit_code != 0,
    ),
    "cgroup_release_agent": (
        "echo /tmp/x > /sys/fs/cgroup/memory/release_agent",
        lambda r: r.exit_code != 0,
    ),
    "read_kernel_log": (
        "dmesg",
        lambda r: r.exit_code != 0 and b"not permitted" in r.stderr,
    ),
    "new_user_namespace": (
        "unshare -U true",
        lambda r: r.exit_code != 0 and b"not permitted" in r.stderr,
    ),
    "new_mount_namespace": (
        "unshare -m true",
        lambda r: r.exit_code != 0 and b"not permitted" in r.stderr,
    ),
    "enter_init_namespaces": (
        "nsenter -t 1 -m -u -n true",
        lambda r: r.exit_code != 0,
    ),
    "reboot": (
        "reboot -f",
        lambda r: b"not permitted" in r.stderr,
    ),
    "swapoff": (
        "swapoff -a; swapon /dev/zero",
        lambda r: r.exit_code != 0,
    ),
    "capabilities": (
        "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status",
        lambda r: (
            r.exit_code == 0
            and len(r.stdout.splitlines()) == 3
            and all(int(line.split()[1], 16) & ~ALLOWED_CAPS == 0 for line in r.stdout.splitlines())
        ),
    ),
    "seccomp_filter_active": (
        "grep '^Seccomp:' /proc/self/status",
        lambda r: r.stdout.split() == [b"Seccomp:", b"2"],
    ),
}


def started(engine: Engine, image: str, **kw: object) -> Container:
    return engine.containers.run(image, SLEEPER, detach=True, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("via", ["exec", "main"])
@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_root_in_a_default_container_cannot(engine: Engine, busybox: str, attempt: str, via: str) -> None:
    script, failed_properly = ATTEMPTS[attempt]
    host_hostname = os.uname().nodename
    before = time.time()
    if via == "exec":
        c = started(engine, busybox)
        result = c.exec(["sh", "-c", script], timeout=60)
        assert c.status() == "running"
        c.remove(force=True)
    else:
        result = engine.containers.run(busybox, ["sh", "-c", script], remove=True, timeout=60)
    assert failed_properly(result), f"{attempt} via {via}: {result}"
    assert os.uname().nodename == host_hostname
    assert abs(time.time() - before) < 120  # the host clock was not moved


def test_capabilities_match_the_documented_set(engine: Engine, busybox: str) -> None:
    c = started(engine, busybox)
    status = c.exec(["cat", "/proc/self/status"]).stdout.decode()
    caps = {
        k: int(v, 16)
        for k, v in (line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
    }
    assert caps["CapEff"] == caps["CapBnd"] == ALLOWED_CAPS, {k: hex(v) for k, v in caps.items()}
    for name, bit in DANGEROUS_CAPS.items():
        assert not caps["CapBnd"] >> bit & 1, name
    # A non-root user holds none, and cannot gain any back.
    nobody = c.exec(["grep", "-E", "^Cap(Eff|Prm)", "/proc/self/status"], user="nobody").stdout.split()
    assert nobody == [b"CapPrm:", b"0000000000000000", b"CapEff:", b"0000000000000000"]
    c.remove(force=True)


def test_a_device_node_outside_the_whitelist_cannot_be_used(engine: Engine, busybox: str) -> None:
    # Even if a device node gets into the container's files (here the host puts
    # one into its writable layer), the device cgroup refuses to open it.
    c = engine.containers.create(busybox, SLEEPER)
    upper = c.dir / "upper"
    os.mknod(upper / "hostdisk", 0o600 | stat.S_IFBLK, os.makedev(DISK_MAJOR, DISK_MINOR))
    os.mknod(upper / "hostmem", 0o600 | stat.S_IFCHR, os.makedev(1, 1))  # /dev/mem
    c.start()
    for node in ("/hostdisk", "/hostmem"):
        r = c.exec(["head", "-c", "1", node])
        assert r.exit_code != 0 and b"not permitted" in r.stderr, (node, r)
    # the whitelisted ones work
    assert c.exec(["sh", "-c", "head -c 4 /dev/zero | wc -c"]).stdout.strip() == b"4"
    assert c.exec(["sh", "-c", "echo x > /dev/null"]).exit_code == 0
    c.remove(force=True)


def test_hostname_is_the_container_name(engine: Engine, busybox: str) -> None:
    c = started(engine, busybox, name="my-box.1")
    assert c.exec(["hostname"]).stdout == b"my-box.1\n"
    assert c.exec(["cat", "/proc/sys/kernel/hostname"]).stdout == b"my-box.1\n"
    assert c.exec(["sh", "-c", "echo $HOSTNAME"]).stdout == b"my-box.1\n"
    assert os.uname().nodename != "my-box.1"
    c.remove(force=True)


def _interfaces(proc_net_dev: bytes) -> set[str]:
    return {line.split(":")[0].strip() for line in proc_net_dev.decode().splitlines()[2:]}


def test_network_none_has_only_loopback(engine: Engine, busybox: str) -> None:
    c = started(engine, busybox)  # "none" is the default
    assert _interfaces(c.exec(["cat", "/proc/net/dev"]).stdout) == {"lo"}
    assert c.exec(["ls", "/sys/class/net"]).stdout.split() == [b"lo"]
    links = c.exec(["ip", "-o", "link"]).stdout.decode().splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    host = set(os.listdir("/sys/class/net"))
    assert host - {"lo"}, "the host has no interface but lo: this test could not tell"
    r = c.exec(["wget", "-q", "-T", "2", "-O", "-", "http://1.1.1.1/"])
    assert r.exit_code != 0
    c.remove(force=True)


def test_network_host_sees_the_hosts_interfaces(engine: Engine, busybox: str) -> None:
    c = started(engine, busybox, network="host")
    host = _interfaces(Path("/proc/net/dev").read_bytes())
    assert _interfaces(c.exec(["cat", "/proc/net/dev"]).stdout) == host
    assert host != {"lo"}
    # the same network namespace as the host, not a copy of its interfaces
    init, _ = c._pids()
    assert init is not None
    assert os.readlink(f"/proc/{init}/ns/net") == os.readlink("/proc/self/ns/net")
    c.remove(force=True)
    c = started(engine, busybox)
    init, _ = c._pids()
    assert init is not None and os.readlink(f"/proc/{init}/ns/net") != os.readlink("/proc/self/ns/net")
    c.remove(force=True)


def test_pid_1_is_liblxcs_init_and_the_main_process_is_its_child(engine: Engine, busybox: str) -> None:
    c = started(engine, busybox)
    assert c.exec(["cat", "/proc/1/cmdline"]).stdout == b"init\0"
    assert c.exec(["cat", "/proc/1/comm"]).stdout == b"lxc-execute\n"
    assert c.exec(["cat", "/proc/2/cmdline"]).stdout == b"sleep\x003600\x00"
    assert b"PPid:\t1\n" in c.exec(["cat", "/proc/2/status"]).stdout
    # On the host, that pid 1 is liblxc's own binary, not anything from the image.
    init, main = c._pids()
    assert init is not None and main is not None
    assert os.path.realpath(f"/proc/{init}/exe") == os.path.realpath(tool("lxc-execute"))
    # Only the container's own processes are visible: init, main, and ps itself.
    pids = [line.split()[0] for line in c.exec(["ps", "-o", "pid"]).stdout.decode().splitlines()[1:]]
    assert sorted(pids, key=int)[:2] == ["1", "2"] and len(pids) == 3, pids
    c.remove(force=True)


def test_containers_do_not_see_each_other_or_the_host(engine: Engine, busybox: str, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("host\n")
    a = engine.containers.run(busybox, ["sleep", "3601"], detach=True, name="alpha")
    b = engine.containers.run(busybox, ["sleep", "3602"], detach=True, name="beta")
    assert a.exec(["sh", "-c", "echo secret > /secret-alpha"]).exit_code == 0
    assert b.exec(["test", "-e", "/secret-alpha"]).exit_code != 0
    assert b"secret-alpha" not in b.exec(["ls", "/"]).stdout
    assert b"3601" not in b.exec(["ps"]).stdout and b"3602" in b.exec(["ps"]).stdout
    assert b.exec(["test", "-e", str(marker)]).exit_code != 0
    assert b.exec(["test", "-e", str(a.dir)]).exit_code != 0
    # Not through /proc either: a's processes have no entry in b's /proc.
    _, a_main = a._pids()
    assert a_main is not None
    assert b.exec(["test", "-e", f"/proc/{a_main}/root/secret-alpha"]).exit_code != 0
    for c in (a, b):
        c.remove(force=True)


def test_exec_and_main_process_share_the_containers_namespaces(engine: Engine, busybox: str) -> None:
    c = started(engine, busybox)
    init, main = c._pids()
    assert init is not None and main is not None
    for ns in ("mnt", "uts", "net", "pid", "ipc"):
        assert os.readlink(f"/proc/{main}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    # what exec sees is what the main process sees
    assert c.exec(["readlink", "/proc/self/ns/mnt"]).stdout == c.exec(["readlink", "/proc/2/ns/mnt"]).stdout
    c.remove(force=True)


def test_busybox_has_the_tools_these_tests_use() -> None:
    # The attempts above must fail for the right reason, not for a missing applet.
    busybox = shutil.which("busybox")
    assert busybox is not None
    import subprocess

    applets = set(
        subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    )
    needed = {
        "mknod",
        "mount",
        "insmod",
        "date",
        "hostname",
        "dmesg",
        "unshare",
        "nsenter",
        "reboot",
        "ip",
        "wget",
    }
    assert needed <= applets, needed - applets
