"""The process that reads and writes a container's files as tar streams
(``Container.get_archive``/``put_archive``/``export``), confined to the
container's root by chroot(2).

Run by pylxcore.runtime.archive as ``python -I -S archivehelper.py MODE PATH
UIDSHIFT GIDSHIFT [OVERLAY-OPTIONS MOUNTPOINT]``, stdlib only (nothing can be
imported once it has chrooted). Its root is either ``/proc/PID/root`` of a
running container's init (its mount namespace's tree: bind mounts
included), or an overlay of a stopped container's layers that it mounts
itself in a private mount namespace (its caller runs it under ``unshare
--mount --propagation private``: the mount dies with it).

Inside the chroot every path, however the container's symlinks lead, stays
in the container: the kernel resolves ``/`` and ``..`` there. Owners stay
numeric: user and group names are never looked up, since NSS would read the
container's nsswitch.conf and load its libraries into this root process.

Protocol: stdout starts with one JSON line, ``{"stat": {...}}`` or
``{"error": "...", "errno": N}``; for ``get`` and ``export`` the tar stream
follows. ``put`` reads a tar stream on stdin.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import posixpath
import stat
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tarfile


def preload(mode: str, mounting: bool) -> None:
    """Import, before the chroot, what ``mode`` will need (nothing can be
    imported after it; the functions below then ``import`` from the
    modules already loaded). ``stat`` needs none of it: its ~60 ms of
    imports are spared every ``cp``."""
    if mounting:
        import subprocess  # noqa: F401
    if mode == "stat":
        return
    mode = "put" if mode == "stat-put" else mode
    import shutil  # noqa: F401
    import tarfile

    # Owners are never named (see above); tarfile asks these modules when set.
    tarfile.pwd = None  # type: ignore[attr-defined]
    tarfile.grp = None  # type: ignore[attr-defined]
    if mode == "put":
        import bz2  # noqa: F401  (tarfile loads these for a compressed stream)
        import gzip  # noqa: F401
        import lzma  # noqa: F401

# Go's os.FileMode bits, as docker's X-Docker-Container-Path-Stat gives a mode.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_GO_SOCKET, _GO_SETUID, _GO_SETGID, _GO_CHAR, _GO_STICKY = 1 << 24, 1 << 23, 1 << 22, 1 << 21, 1 << 20
NOBODY = 65534
PIPE_BUFFER = 1 << 20  # bytes: what the helper reads or writes its tar in at once (as its pipes hold)


def go_mode(mode: int) -> int:
    """``st_mode`` as Go's os.FileMode (what docker's path stat shows)."""
    out = mode & 0o777
    kinds = {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFBLK: _GO_DEVICE,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHAR,
        stat.S_IFIFO: _GO_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
    }
    out |= kinds.get(stat.S_IFMT(mode), 0)
    for bit, go in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if mode & bit:
            out |= go
    return out


def path_stat(name: str, st: os.stat_result, link: str) -> dict[str, Any]:
    """docker's container path stat: name, size, mode (Go's bits), mtime, linkTarget."""
    mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)
    return {
        "name": name,
        "size": st.st_size,
        "mode": go_mode(st.st_mode),
        "mtime": mtime.isoformat().replace("+00:00", "Z"),
        "linkTarget": link,
    }


def _say(out: IO[bytes], doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc).encode() + b"\n")
    out.flush()


def _shifted(tarinfo: tarfile.TarInfo, uid_shift: int, gid_shift: int) -> tarfile.TarInfo:
    """Host ids as the container's (a user-namespaced container's files
    belong to host ids from its range); one outside it reads as nobody."""
    uid, gid = tarinfo.uid - uid_shift, tarinfo.gid - gid_shift
    tarinfo.uid = uid if 0 <= uid < NOBODY + 1 or not uid_shift else NOBODY
    tarinfo.gid = gid if 0 <= gid < NOBODY + 1 or not gid_shift else NOBODY
    tarinfo.uname = tarinfo.gname = ""
    return tarinfo


def get(path: str, out: IO[bytes], uid_shift: int, gid_shift: int, *, follow_link: bool = False) -> None:
    """Stream ``path`` as a tar, named by its last component as docker names
    it: a symlink as itself, unless ``path`` ends in ``/`` or ``/.`` or
    ``follow_link`` (``cp -L``: what it leads to, under its name); a path
    ending in ``/.`` gives its contents."""
    contents = path.endswith("/.") or path == "."
    follow = contents or path.endswith("/")
    norm = posixpath.normpath("/" + path)
    parent, base = posixpath.split(norm)
    if follow or not base:
        os.chdir(norm)
        name, arcname = ".", "." if contents or not base else base
        st = os.stat(".")
    else:
        os.chdir(parent)
        name = arcname = base
        if follow_link:
            name = os.path.realpath(base)  # (in the chroot: the container's own tree)
        st = os.lstat(name)
    link = os.readlink(name) if stat.S_ISLNK(st.st_mode) else ""
    _say(out, {"stat": path_stat(base or "/", st, link)})
    import tarfile  # (preloaded)

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(name, arcname=arcname, filter=lambda t: _shifted(t, uid_shift, gid_shift))


def export(out: IO[bytes], uid_shift: int, gid_shift: int) -> None:
    """Stream the whole tree as ``docker export`` does: each top entry by its name."""
    os.chdir("/")
    _say(out, {"stat": path_stat("/", os.stat("."), "")})
    root_dev = os.lstat(".").st_dev
    import tarfile  # (preloaded)

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(".")):
            _add_tree(tar, name, root_dev, uid_shift, gid_shift)


def _add_tree(tar: tarfile.TarFile, name: str, root_dev: int, uid_shift: int, gid_shift: int) -> None:
    """Add ``name`` and what is under it, but not what is mounted on it
    (/proc, /sys, /dev of a running container: a directory on another
    filesystem is added empty, as docker export shows them)."""
    info = tar.gettarinfo(name, name)
    if info is None:
        return  # a socket: tar has no such member
    info = _shifted(info, uid_shift, gid_shift)
    if info.isreg():
        with open(name, "rb") as fh:
            tar.addfile(info, fh)
    else:
        tar.addfile(info)
    if info.isdir() and os.lstat(name).st_dev == root_dev:
        for child in sorted(os.listdir(name)):
            _add_tree(tar, f"{name}/{child}", root_dev, uid_shift, gid_shift)


def put(path: str, data: IO[bytes], out: IO[bytes], uid_shift: int, gid_shift: int) -> None:
    """Unpack the tar on ``data`` into the directory ``path`` as docker
    does: modes and numeric owners kept, what a member replaces removed
    first (never written through), names made relative to ``path``."""
    import shutil  # (preloaded, as tarfile)
    import tarfile

    os.chdir(posixpath.normpath("/" + path))  # (raises ENOTDIR, ENOENT)
    here = os.getcwd()

    def admit(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        # The "tar" filter refuses names and hard links leading out of
        # ``path``; it drops setuid and write bits, which docker keeps.
        checked = tarfile.tar_filter(member, dest)
        kept = checked.replace(
            mode=member.mode, uid=member.uid + uid_shift, gid=member.gid + gid_shift, deep=False
        )
        target = os.path.join(dest, kept.name)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return kept
        if not (stat.S_ISDIR(st.st_mode) and kept.isdir()):
            # A file is replaced, not written through (it may be a symlink).
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        return kept

    with tarfile.open(fileobj=data, mode="r|*") as tar:
        tar.extractall(here, numeric_owner=True, filter=admit)
    _say(out, {"stat": path_stat(posixpath.basename(here) or "/", os.stat(here), "")})


def _mount(options: str, root: str, out: IO[bytes]) -> bool:
    """Mount a stopped container's overlay at ``root`` (in this process's
    private mount namespace); False, the error said, when it cannot be."""
    import subprocess  # (preloaded)

    done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, root],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        _say(out, {"error": f"cannot mount the container's layers: {done.stderr.decode(errors='replace')}",
                   "errno": errno.EIO})
    return done.returncode == 0


def main(argv: list[str]) -> int:
    mode = argv[0]
    preload(mode, mounting=len(argv) > 5)
    # Big buffers: a tar moves through these pipes in records of 10 kB, and
    # each syscall a record costs is a wake-up of the process at the other end.
    with open(sys.stdout.fileno(), "wb", buffering=PIPE_BUFFER, closefd=False) as out:
        return run(argv, out)


def run(argv: list[str], out: IO[bytes]) -> int:
    """Do what ``argv`` asks (see the module's docstring), answering on ``out``."""
    mode, path, uid_shift, gid_shift = argv[0], argv[1], int(argv[2]), int(argv[3])
    root = argv[4]
    bad_input: tuple[type[Exception], ...] = (ValueError,)
    if mode != "stat":
        import tarfile  # (preloaded)

        bad_input += (tarfile.TarError,)
    try:
        if len(argv) > 5 and not _mount(argv[5], root, out):
            return 1
        os.chroot(root)
        os.chdir("/")
        if mode == "stat":
            norm = posixpath.normpath("/" + path)
            st = os.stat(norm) if path.endswith("/") else os.lstat(norm)
            link = os.readlink(norm) if stat.S_ISLNK(st.st_mode) else ""
            _say(out, {"stat": path_stat(posixpath.basename(norm) or "/", st, link)})
        elif mode in ("get", "get-follow"):
            get(path, out, uid_shift, gid_shift, follow_link=mode == "get-follow")
        elif mode == "export":
            export(out, uid_shift, gid_shift)
        elif mode == "put":
            with open(sys.stdin.fileno(), "rb", buffering=PIPE_BUFFER, closefd=False) as data:
                put(path, data, out, uid_shift, gid_shift)
        elif mode == "stat-put":
            # ``cp`` into a container: PATH's stat (or ENOENT) first; the
            # caller then names the directory to unpack into, on a line of
            # its own before the tar (an empty line: it gave up).
            norm = posixpath.normpath("/" + path)
            try:
                st = os.stat(norm) if path.endswith("/") else os.lstat(norm)
                link = os.readlink(norm) if stat.S_ISLNK(st.st_mode) else ""
                _say(out, {"stat": path_stat(posixpath.basename(norm) or "/", st, link)})
            except FileNotFoundError as err:
                _say(out, {"error": f"{path}: {err.strerror}", "errno": err.errno})
            with open(sys.stdin.fileno(), "rb", buffering=PIPE_BUFFER, closefd=False) as data:
                path = data.readline().decode("utf-8", "surrogateescape").rstrip("\n")
                if path:
                    put(path, data, out, uid_shift, gid_shift)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    except OSError as err:
        _say(out, {"error": f"{path}: {err.strerror}", "errno": err.errno or errno.EIO})
        return 1
    except bad_input as err:
        _say(out, {"error": f"{path}: {err}", "errno": errno.EINVAL})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
