"""The root of a user-namespaced container, mounted by its supervisor: each
image layer idmapped to the container's ids (raw syscalls: open_tree,
mount_setattr, move_mount) under an overlay, in a mount namespace of the
supervisor's own. The library's side is pylxcore.runtime.userns.

ctypes is imported only here, and only for such containers.
"""

from __future__ import annotations

import os

from pylxcore.supervisor.runspec import UsernsSpec

USERNS_ROOTFS = "/run/pylxcore/rootfs"
# Where the library mounts networked containers' network namespaces
# (pylxcore.network.netns). Defined here, the stdlib-only side, for the unmount below.
NETNS_ROOT = "/run/pylxcore/netns"
_CLONE_NEWNS = 0x00020000


def userns_rootfs(ctrdir: str) -> None:
    """Mount a user-namespaced container's root at USERNS_ROOTFS, in a mount
    namespace of this process's own (lxc-execute inherits it): each image
    layer idmapped to the container's ids, the overlay over them with the
    container's writable layer on top, as ``userns.spec`` says (see
    runspec.UsernsSpec and pylxcore.runtime.userns). Raises OSError, ValueError."""
    import ctypes  # (only user-namespaced containers need it)

    spec = UsernsSpec.read(ctrdir)
    ustart, ucount, gstart, gcount = spec.ids
    lowers, keep = spec.lowers, spec.keep
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> int:
        if result < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return result

    clone_newuser = 0x10000000
    ms_rec, ms_private = 0x4000, 1 << 18
    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, ms_rec | ms_private, None), "mount --make-rprivate /")
    # This private copy of the host's mounts would hold every network namespace
    # mounted right now (restart-policy containers keep theirs) alive until this
    # supervisor exits: their veths would linger after removal. Not ours to keep.
    libc.umount2(NETNS_ROOT.encode(), 2)  # MNT_DETACH; fails harmlessly when not mounted

    # A user namespace with the container's map: what the idmapped mounts use.
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(hold_w)
        code = 0 if libc.unshare(clone_newuser) == 0 else 1
        os.write(ready_w, b"x")
        os.read(hold_r, 1)  # until the parent has opened our namespace
        os._exit(code)
    os.close(ready_w)
    os.close(hold_r)
    userns = -1
    try:
        os.read(ready_r, 1)
        with open(f"/proc/{child}/uid_map", "w") as fh:
            fh.write(f"0 {ustart} {ucount}")
        with open(f"/proc/{child}/gid_map", "w") as fh:
            fh.write(f"0 {gstart} {gcount}")
        userns = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.close(ready_r)
        os.waitpid(child, 0)

    class MountAttr(ctypes.Structure):
        _fields_ = [
            ("attr_set", ctypes.c_uint64),
            ("attr_clr", ctypes.c_uint64),
            ("propagation", ctypes.c_uint64),
            ("userns_fd", ctypes.c_uint64),
        ]

    sys_open_tree, sys_move_mount, sys_mount_setattr = 428, 429, 442  # the same on x86_64 and arm64
    open_tree_clone, at_empty_path, move_mount_f_empty_path = 1, 0x1000, 0x4
    mount_attr_idmap = 0x100000
    attr = MountAttr(mount_attr_idmap, 0, 0, userns)
    try:
        for i, lower in enumerate(lowers):
            fd = check(
                libc.syscall(sys_open_tree, -100, lower.encode(), open_tree_clone | os.O_CLOEXEC), "open_tree"
            )
            try:
                size = ctypes.sizeof(attr)
                check(
                    libc.syscall(sys_mount_setattr, fd, b"", at_empty_path, ctypes.byref(attr), size),
                    "mount_setattr(MOUNT_ATTR_IDMAP)",
                )
                target = os.path.join(ctrdir, "lower", str(i))
                check(
                    libc.syscall(sys_move_mount, fd, b"", -100, target.encode(), move_mount_f_empty_path),
                    "move_mount",
                )
            finally:
                os.close(fd)
    finally:
        os.close(userns)
    # Relative paths (from the container's dir) keep the options short: the
    # whole option string must fit in one page.
    lowerdir = ":".join(f"lower/{i}" for i in range(len(lowers)))
    options = f"lowerdir={lowerdir},upperdir=upper,workdir=work"
    # The container's root must reach its rootfs through dirs it may enter,
    # and a store root may well lie under a 0700 dir: so the overlay goes on a
    # tmpfs of this namespace's own at USERNS_ROOTFS's parent, which the host
    # only ever sees as an empty dir.
    parent = os.path.dirname(USERNS_ROOTFS)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    check(libc.mount(b"tmpfs", parent.encode(), b"tmpfs", 0, b"mode=0755,size=64k"), "mount tmpfs")
    os.mkdir(USERNS_ROOTFS, 0o755)
    cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    os.chdir(ctrdir)
    try:
        options_b = options.encode()
        check(libc.mount(b"overlay", USERNS_ROOTFS.encode(), b"overlay", 0, options_b), "mount overlay")
    finally:
        os.fchdir(cwd)
        os.close(cwd)
    # liblxc wants the container's root to be able to enter the lxcpath (the
    # store's containers/). When a dir on the way is closed to others (the
    # store's own dirs are root's alone, 0700; a 0700 home, pytest's tmp),
    # rebuild it in this mount namespace: a tmpfs over the closed dir, and in
    # it, at their own paths, this container's dir (not the real containers/,
    # which stays closed: its stand-in on the tmpfs is open) and whatever else
    # liblxc reads from under it (the seccomp profile, the sources of bind
    # mounts). The host's dirs keep their modes.
    lxcpath = os.path.dirname(os.path.abspath(ctrdir))
    parts = lxcpath.strip("/").split("/")
    ancestors = ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    closed = next((p for p in ancestors if not os.stat(p).st_mode & 0o001), None)
    if closed is None:
        return
    clones: list[tuple[str, bool, int]] = []
    try:
        for path in [os.path.abspath(ctrdir), *keep]:
            if path == closed or path.startswith(closed + "/"):
                flags = open_tree_clone | 0x8000 | os.O_CLOEXEC  # AT_RECURSIVE
                fd = check(libc.syscall(sys_open_tree, -100, path.encode(), flags), f"open_tree {path}")
                clones.append((path, os.path.isdir(path), fd))
        check(libc.mount(b"tmpfs", closed.encode(), b"tmpfs", 0, b"mode=0755,size=64k"), "mount tmpfs")
        for path, is_dir, fd in clones:
            if is_dir:
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            where = path.encode()
            check(libc.syscall(sys_move_mount, fd, b"", -100, where, move_mount_f_empty_path), "move_mount")
    finally:
        for _, _, fd in clones:
            os.close(fd)


def leave_mount_namespace(host_ns: int) -> None:
    """setns(2) back into the mount namespace ``host_ns`` (and close it). Raises OSError."""
    import ctypes

    try:
        if ctypes.CDLL(None, use_errno=True).setns(host_ns, _CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNS)")
    finally:
        os.close(host_ns)
