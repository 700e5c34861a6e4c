"""Base sources: where the bottom layer of an image comes from.

Each base has a cache key (what decides its content) and a way to fill a
fresh directory. ``image:NAME:TAG`` bases are not here: the builder reuses the
other image's layers as they are. What a key was made from is told to a
``Reads`` (build/recorder.py) as it was read: symlinks followed where the key
followed them, so a base behind a repointed link is a changed base.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pylxcore.build.record import settled
from pylxcore.errors import BuildError
from pylxcore.store import canonical_json, sha256_hex

if TYPE_CHECKING:
    from pylxcore.build.recorder import Reads

# Bumped when what a base produces changes, so old cached bases are not reused.
_RECIPE = 1

# xattrs a layer never takes from foreign data (a tar base, an imported image:
# see transfer/layertar.py and unpack.py): overlayfs's own, which would forge
# opaque dirs, redirects and whiteouts in the store's layers, and those whose
# meaning is local to one host's security policy.
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
LOCAL_XATTRS = ("security.selinux",)
# The same as GNU tar's --xattrs-exclude patterns (fnmatch; the names hold no
# wildcard characters of their own).
_DROPPED_XATTRS = [f"{prefix}*" for prefix in OVERLAY_XATTR_PREFIXES] + list(LOCAL_XATTRS)

Log = Callable[[str], None]


# (path, dev, inode, size, mtime, ctime) -> digest: a cached rebuild must not
# re-read the 2 MB busybox binary (or a base tarball) every time. Only settled
# files are kept (see record.settled), as for the build context.
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}


def _file_sha256(path: str, reads: Reads | None = None) -> str:
    """The sha256 of the file ``path`` (a symlink followed), which ``reads`` learns."""
    if reads is not None:
        reads.resolved(path, os.path.realpath(path))
    st = os.stat(path)
    fingerprint = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _DIGESTS.get(fingerprint)
    if digest is None:
        digest = _hash_file(path)
        if settled(st, time.time_ns()):
            _DIGESTS[fingerprint] = digest
    if reads is not None:
        reads.saw(path, st, follow=True, sha256=digest)
    return digest


def _hash_file(path: str) -> str:
    import hashlib  # (deferred: 4 ms of every import pylxcore)

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _listing(path: str, st: os.stat_result, follow: bool, reads: Reads | None) -> list[str]:
    """The sorted names in the directory ``path``, stat'ed as ``st`` just before."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        # As os.walk does: a folder that cannot be listed adds nothing.
        if reads is not None:
            reads.refuse(f"{path} could not be listed")
        return []
    if reads is not None:
        reads.saw(path, st, follow=follow, names=names)
    return names


def tree_digest(root: Path, reads: Reads | None = None) -> str:
    """A digest of a tree's names, types, modes, owners, link targets and bytes.

    ``root`` is followed if it is a symlink, nothing below it is. Each folder
    is stat'ed before it is listed, each entry before its bytes are read, and
    ``reads`` learns them all so.
    """
    import hashlib  # (deferred: 4 ms of every import pylxcore)

    h = hashlib.sha256()
    top = os.fspath(root)
    try:
        top_st = os.stat(top)
    except OSError:
        return h.hexdigest()
    # Folders still to hash (relative path, names), the next last: the order
    # of os.walk, each folder's entries before any of its subfolders'.
    pending = [("", _listing(top, top_st, True, reads))]
    while pending:
        rel_dir, names = pending.pop()
        subdirs = []
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(top, rel)
            st = os.lstat(full)
            h.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0".encode("utf-8", "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                h.update(target.encode("utf-8", "surrogateescape"))
                if reads is not None:
                    reads.saw(full, st, follow=False, target=target)
            elif stat.S_ISREG(st.st_mode):
                digest = _file_sha256(full)
                h.update(digest.encode())
                if reads is not None:
                    reads.saw(full, st, follow=False, sha256=digest)
            elif stat.S_ISDIR(st.st_mode):
                subdirs.append((rel, _listing(full, st, False, reads)))
            else:
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    h.update(f"{st.st_rdev}".encode())
                if reads is not None:
                    reads.saw(full, st, follow=False)
            h.update(b"\n")
        pending.extend(reversed(subdirs))
    return h.hexdigest()


def busybox_path(reads: Reads | None = None) -> str:
    """The host's busybox binary; ``reads`` learns where it was looked for."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        exists = os.path.exists(candidate)
        if reads is not None:
            reads.exists(candidate, exists)
        if exists:
            return candidate
    raise BuildError(
        "base 'busybox' needs the host's busybox-static package (apt-get install busybox-static)"
    )


def _check_static(path: str) -> None:
    # A dynamic busybox would need the host's libc inside the image.
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if b"/lib64/ld-linux" in head or b"ld-linux-" in head:
        raise BuildError(f"{path} is dynamically linked: base 'busybox' needs the busybox-static package")


def apt_mirror() -> str:
    """The Debian mirror the host's apt sources name (deb822 or one-line format)."""
    sources: list[tuple[str, str]] = []  # (uri, suites)
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as fh:
            text = fh.read()
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    sources.append((uri, fields.get("suites", "")))
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        try:
            with open(path) as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                sources.append((words[1], words[2]))
    for uri, suites in sources:
        # The main archive, not -security or a third-party repository.
        if (
            "security" not in uri
            and "/debian" in uri
            and not any(s.endswith("-security") for s in suites.split())
        ):
            return uri.rstrip("/")
    raise BuildError("no Debian mirror found in the host's apt sources (/etc/apt/sources.list[.d])")


def _arch() -> str:
    import subprocess  # (deferred: a tenth of import pylxcore)

    out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or os.uname().machine


def base_key(base: str, reads: Reads | None = None) -> str:
    """The cache key of a base, "sha256:<hex>"; ``reads`` learns what it was made from.
    Raises BuildError if its source is missing."""
    kind, _, arg = base.partition(":")
    if base == "busybox":
        path = busybox_path(reads)
        ident: dict[str, object] = {"base": "busybox", "busybox": _file_sha256(path, reads)}
    elif base == "scratch":
        ident = {"base": "scratch"}
    elif kind == "debian":
        if reads is not None:
            reads.refuse("a debian: base's key asks dpkg for the architecture: only a build can")
        ident = {
            "base": "debian",
            "suite": arg,
            "variant": "minbase",
            "arch": _arch(),
            "mirror": apt_mirror(),
        }
    elif kind == "dir":
        if not os.path.isdir(arg):
            raise BuildError(f"base {base!r}: {arg} is not a directory")
        if reads is not None:
            reads.resolved(arg, os.path.realpath(arg))
        ident = {"base": "dir", "tree": tree_digest(Path(arg), reads)}
    elif kind == "tar":
        if not os.path.isfile(arg):
            raise BuildError(f"base {base!r}: {arg} is not a file")
        # The xattrs dropped shape the layer too: a base extracted before
        # they were dropped (or under another list) is not reused.
        ident = {"base": "tar", "sha256": _file_sha256(arg, reads), "dropped_xattrs": _DROPPED_XATTRS}
    else:
        raise BuildError(f"unknown base {base!r}")
    ident["recipe"] = _RECIPE
    return "sha256:" + sha256_hex(canonical_json(ident))


def materialize(base: str, dest: Path, log: Log) -> None:
    """Fill the empty directory ``dest`` with the base's root filesystem."""
    kind, _, arg = base.partition(":")
    if base == "busybox":
        _busybox(dest)
    elif base == "scratch":
        pass  # an empty root: the first layer is the Dockerfile's
    elif kind == "debian":
        _debootstrap(arg, dest, log)
    elif kind == "dir":
        _run(["cp", "-a", "--reflink=auto", f"{arg}/.", str(dest)], f"copy of {arg}", log)
    elif kind == "tar":
        import shutil  # (deferred: 3 ms of every import pylxcore)

        if arg.endswith(".zst") and shutil.which("zstd") is None:
            raise BuildError(f"base {base!r} needs the zstd tool (apt-get install zstd)")
        extract_tar(arg, dest, log)
    else:
        raise BuildError(f"unknown base {base!r}")


def extract_tar(archive: str, dest: Path, log: Log) -> None:
    """Unpack the tar ``archive`` (plain or compressed) into the empty folder
    ``dest``, owners, modes and xattrs kept (a ``tar:`` base, a Dockerfile's
    ``ADD``). Raises BuildError with tar's complaint."""
    # GNU tar recognizes the compression from the archive's first bytes.
    # Every xattr but the dropped ones: GNU tar applies the excludes after
    # the include, and never writes what they match.
    _run(
        [
            "tar",
            "-x",
            "-p",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            *[f"--xattrs-exclude={pattern}" for pattern in _DROPPED_XATTRS],
            "-f",
            archive,
            "-C",
            str(dest),
        ],
        f"extraction of {archive}",
        log,
    )


def _run(argv: list[str], what: str, log: Log) -> None:
    import subprocess  # (deferred: a tenth of import pylxcore)

    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        log(line)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-10:]
        raise BuildError(
            f"{what} failed with exit code {proc.returncode}", exit_code=proc.returncode, output_tail=tail
        )


_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _busybox(dest: Path) -> None:
    import shutil  # (deferred: 3 ms of every import pylxcore)
    import subprocess  # (deferred: a tenth of import pylxcore)

    src = busybox_path()
    _check_static(src)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "var/log", "run"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").mkdir(mode=0o1777)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(src, dest / "bin" / "busybox")
    listing = subprocess.run([src, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    for rel in listing:
        link = dest / rel
        if rel == "bin/busybox" or os.path.lexists(link):
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    (dest / "etc" / "passwd").write_text(_PASSWD)
    (dest / "etc" / "group").write_text(_GROUP)
    (dest / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n")


def _debootstrap(suite: str, dest: Path, log: Log) -> None:
    import shutil  # (deferred: 3 ms of every import pylxcore)
    import subprocess  # (deferred: a tenth of import pylxcore)

    if shutil.which("debootstrap") is None:
        raise BuildError("base 'debian:…' needs the debootstrap package (apt-get install debootstrap)")
    mirror = apt_mirror()
    argv = ["debootstrap", "--variant=minbase", suite, str(dest), mirror]
    log(f"debootstrap {suite} from {mirror}")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        log(line)
        tail = (tail + [line])[-20:]
    code = proc.wait()
    if code != 0:
        raise BuildError(
            f"debootstrap of {suite!r} failed with exit code {code}", exit_code=code, output_tail=tail
        )
    # The downloaded .debs are not part of the system; keep the layer lean.
    for deb in glob.glob(str(dest / "var/cache/apt/archives/*.deb")):
        os.unlink(deb)
