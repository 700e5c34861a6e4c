"""A networked container's network namespace, made by the library, not by
liblxc: a file ``/run/pylxcore/netns/<root id>/<container>`` that holds it
(a bind mount of the namespace, as ``ip netns add`` makes), its veths made
into it and its addresses and default route set, over netlink
(pylxcore.network.rtnetlink). The container joins it
(``lxc.namespace.share.net``, see pylxcore.runtime.lxcconfig) and liblxc
creates and deletes no link.

Why: liblxc deletes the host's end of each veth as the container stops,
while the container's namespace is still alive, before the container is
reported stopped: 15-25 ms of the kernel's time on the path of every
``run --rm``. Here the library unmounts and unlinks the namespace file at
removal (microseconds); once its last process has gone, the kernel tears
the namespace down, and its veths with it, in a work queue of its own
(cleanup_net), off the caller's path.

The file is made at each start and dropped as soon as the container runs
(its processes hold the namespace then: it and its veths go when they end,
as Docker's sandbox goes at a stop), or, for a container with a restart
policy, whose supervisor starts it again in the same namespace, at its
removal or next start. A file whose container is gone (its remover was
killed) is an orphan ``Engine.check()`` removes (pylxcore.network.repair).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Iterator, Sequence

import attrs

from pylxcore.errors import LXCError
from pylxcore.network.rtnetlink import Socket
from pylxcore.supervisor.mounts import NETNS_ROOT as _NETNS_ROOT

NETNS_ROOT = Path(_NETNS_ROOT)
_CLONE_NEWNET = 0x40000000
_MS_BIND, _MS_REC, _MS_SHARED, _MNT_DETACH = 0x1000, 0x4000, 1 << 20, 2
_libc = ctypes.CDLL(None, use_errno=True)


@attrs.frozen
class NsNic:
    """One veth of a container's namespace."""

    host_name: str  # its host side (pylxcore.network.endpoint.veth_name)
    bridge: str
    address: str  # its address in the namespace
    prefixlen: int
    gateway: str | None  # the default route through it (None: none)


def ns_dir(root_id: str) -> Path:
    """Where the namespace files of the containers of store ``root_id`` are."""
    return NETNS_ROOT / root_id


def ns_path(root_id: str, container: str) -> Path:
    """The namespace file of container ``container`` of store ``root_id``."""
    return ns_dir(root_id) / container


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source is not None else None
    _check(_libc.mount(src, target.encode(), None, flags, None), f"mount {target}")


def _is_mount_point(path: Path) -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(line.split(" ")[4] == str(path) for line in fh)


@contextlib.contextmanager
def _root_locked() -> Iterator[None]:
    """Hold the host-wide lock of NETNS_ROOT (its mount comes and goes: see
    _prepare_root and forget_dir, in any process)."""
    NETNS_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(f"{NETNS_ROOT}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _prepare_root() -> None:
    """Make NETNS_ROOT a shared mount of its own, as ``ip netns`` does with
    /run/netns: a mount namespace copied from the host's while a namespace
    file is mounted (a container's, as liblxc sets it up) then sees it
    unmounted too, instead of keeping the namespace alive. The caller holds
    _root_locked (forget_dir undoes it once no store has a file there)."""
    if not _is_mount_point(NETNS_ROOT):
        _mount(str(NETNS_ROOT), str(NETNS_ROOT), _MS_BIND | _MS_REC)
        _mount(None, str(NETNS_ROOT), _MS_SHARED | _MS_REC)


def _new_namespace(path: Path) -> Socket:
    """A new network namespace held by file ``path`` (made here), and a
    netlink socket in it. Made in a thread of its own: unshare() moves only
    the calling thread, which ends there; the main one never leaves the host's."""
    out: list[Socket] = []
    failed: list[OSError] = []

    def inside() -> None:
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
            _mount("/proc/thread-self/ns/net", str(path), _MS_BIND)
            out.append(Socket())
        except OSError as err:  # (handed to the caller's thread)
            failed.append(err)

    t = threading.Thread(target=inside, name="pylxcore-netns")
    t.start()
    t.join()
    if failed or not out:
        raise failed[0] if failed else OSError(errno.EIO, "the namespace's thread failed")
    return out[0]


def make(path: Path, nics: Sequence[NsNic]) -> None:
    """A new network namespace at ``path`` (any there before is dropped)
    with loopback up and a veth for each of ``nics``: ``eth0``, ``eth1``…
    in it, its host side a port of its bridge. Raises LXCError (nothing is
    left then)."""
    drop(path)
    try:
        with _root_locked():  # (its file made before forget_dir could unmount the root)
            _prepare_root()
            path.parent.mkdir(mode=0o700, exist_ok=True)
            inner = _new_namespace(path)
        with inner, Socket() as host:
            inner.set_up(1)  # loopback: always ifindex 1 in a new namespace
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                for i, nic in enumerate(nics):
                    # A MAC of the 0xfe.. range on the host side (as liblxc does):
                    # a bridge takes its ports' lowest MAC, so it keeps its own
                    # rather than take each new container's (and make the others' ARP stale).
                    mac = b"\xfe" + secrets.token_bytes(5)
                    master = socket.if_nametoindex(nic.bridge)
                    try:
                        host.add_veth(nic.host_name, master, mac, f"eth{i}", i + 2, fd)
                    except FileExistsError:
                        # The same container's veth of a namespace dropped a moment
                        # ago (started again, or removed and made again under its
                        # name), which the kernel has not torn down yet.
                        host.delete_link(nic.host_name)
                        host.add_veth(nic.host_name, master, mac, f"eth{i}", i + 2, fd)
            finally:
                os.close(fd)
            for i, nic in enumerate(nics):
                inner.set_up(i + 2)
                inner.add_address(i + 2, nic.address, nic.prefixlen)
                if nic.gateway is not None:
                    inner.add_default_route(i + 2, nic.gateway)
    except OSError as err:
        drop(path)  # (its veths die with it)
        raise LXCError(
            f"cannot set up network namespace {path}: {err}", operation="network", detail=str(err)
        ) from err


def drop(path: Path) -> bool:
    """Unmount and remove namespace file ``path``; whether there was one. The
    kernel deletes the namespace and its veths once no process is left in it.
    Raises LXCError (the host refused)."""
    if _libc.umount2(str(path).encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # (not mounted; not there)
            raise LXCError(f"cannot unmount {path}: {os.strerror(err)}", operation="network")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        raise LXCError(f"cannot remove {path}: {err}", operation="network") from err
    return True


def forget_dir(root_id: str) -> None:
    """Remove the (empty) dir of store ``root_id``'s namespace files, and
    NETNS_ROOT's mount once no store has one; nothing while it holds any.
    The caller holds the store's network lock, with no network left, so
    that no start makes a file in it meanwhile. Raises nothing."""
    with contextlib.suppress(OSError), _root_locked():
        with contextlib.suppress(OSError):  # (not empty, or not there)
            ns_dir(root_id).rmdir()
        if not any(NETNS_ROOT.iterdir()) and _is_mount_point(NETNS_ROOT):
            _libc.umount2(str(NETNS_ROOT).encode(), _MNT_DETACH)


def names(root_id: str) -> list[str]:
    """The containers of store ``root_id`` with a namespace file."""
    d = ns_dir(root_id)
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
