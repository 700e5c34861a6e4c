"""The store keeps other host users out (SPEC.md section 7): a throwaway
unprivileged host user can neither read a container's secrets, logs and
records, nor reach its writable layer or the image layers, nor run a setuid
binary a container planted in its own layer; and it is told that pylxcore
needs root.

The store roots here lie under a dir open to everyone (0755 all the way up,
unlike pytest's tmp, which is 0700): only the store's own modes stand between
that user and its files."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from pylxcore import Engine, Image, LXCError
from pylxcore.runtime.check import CheckReport
from pylxcore.runtime.userns import subordinate_ids
from tests.conftest import _our_cgroups, _our_mounts, require_lxc, until

NEEDS_ROOT = "pylxcore needs root"
RUNUSER = shutil.which("runuser", path="/usr/sbin:/usr/bin:/sbin:/bin") or "runuser"


class HostUser(NamedTuple):
    name: str
    uid: int
    gid: int


@pytest.fixture
def host_user() -> Iterator[HostUser]:
    """An unprivileged host user of this test alone, removed whatever happens."""
    require_lxc()  # root and LXC: skips off CI, fails under CI=true, never skips there
    name = f"pxtest-{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
        yield HostUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def as_user(user: HostUser, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user``, an unprivileged process from its first exec on.
    (Not setpriv: it keeps root's capabilities until its exec, so that exec
    itself would pass walls that CAP_DAC_OVERRIDE lets root through.)"""
    return subprocess.run(
        [RUNUSER, "-u", user.name, "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", **env},
    )


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A dir under /tmp that everyone may enter (its parents are 0755 or 1777)."""
    path = Path(tempfile.mkdtemp(prefix="pxhost-", dir="/tmp"))
    path.chmod(0o755)
    assert all(p.stat().st_mode & 0o001 for p in path.parents)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def open_engine(open_dir: Path) -> Iterator[Engine]:
    """An engine whose root lies in ``open_dir``, made under an umask that
    would leave everything open to everyone; afterwards, like conftest's
    ``engine``: every container removed and nothing of it left behind."""
    require_lxc()
    old_umask = os.umask(0)
    try:
        eng = Engine(root=open_dir / "pxroot")
        yield eng
        for c in eng.containers.list(all=True):
            c.remove(force=True)
        eng.close()
    finally:
        os.umask(old_umask)
    leftovers = _our_cgroups(eng.store.root_id) + _our_mounts(eng.root)
    assert not leftovers, f"left behind: {leftovers}"


def user_python(user: HostUser) -> tuple[str, dict[str, str]]:
    """An interpreter ``user`` may run, and a PYTHONPATH that finds pylxcore and
    its dependencies (this venv's interpreter may lie under root's 0700 home)."""
    import attrs
    import yaml

    import pylxcore

    path = os.pathsep.join(os.path.dirname(os.path.dirname(str(m.__file__))) for m in (pylxcore, attrs, yaml))
    env = {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/bin")
    for candidate in (sys.executable, os.path.realpath(sys.executable), system):
        if candidate and as_user(user, [candidate, "-c", "import pylxcore.cli"], **env).returncode == 0:
            return candidate, env
    pytest.fail(f"no Python that {user.name} may run imports pylxcore from {path}")


def assert_denied(user: HostUser, argv: list[str]) -> None:
    r = as_user(user, argv)
    assert r.returncode != 0 and "Permission denied" in r.stderr, (argv, r)


def closed_to_others(root: Path) -> None:
    """The root and everything at its top are root's alone: dirs 0700, files 0600."""
    st = root.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, 0), oct(st.st_mode)
    for entry in root.iterdir():
        st = entry.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (want, 0), (entry, oct(st.st_mode))


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o777], ids=["umask000", "umask022", "umask777"])
def test_a_new_store_is_roots_alone_whatever_the_umask(open_dir: Path, umask: int) -> None:
    old_umask = os.umask(umask)
    try:
        engine = Engine(root=open_dir / "srv" / "px" / "pxroot")  # as for /var/lib/pylxcore
    finally:
        os.umask(old_umask)
    closed_to_others(engine.root)
    assert {"layers", "l", "images", "containers", "tmp", "locks"} <= set(os.listdir(engine.root))
    # The dirs made above it are never writable by others (whoever may write a
    # root's parent may swap the root for one of their own).
    for parent in (open_dir / "srv", open_dir / "srv" / "px"):
        assert not parent.stat().st_mode & 0o022, oct(parent.stat().st_mode)


@pytest.mark.parametrize("userns", [False, True], ids=["default", "userns"])
def test_other_host_users_are_kept_out(open_engine: Engine, host_user: HostUser, userns: bool) -> None:
    engine = open_engine
    secret = f"s3cret-{secrets.token_hex(8)}"
    built = engine.images.build(Image("test/hostusers:1", base="busybox", cmd=["sleep", "3600"]))
    c = engine.containers.run(
        built.id,
        ["sh", "-c", 'echo "password is $DB_PASSWORD"; exec sleep 3600'],
        name="sec",
        detach=True,
        env={"DB_PASSWORD": secret},
        userns=userns,
    )
    # The container's root plants a setuid copy of busybox in its own layer
    # (named busybox-*: busybox runs the applet named by its next argument).
    r = c.exec(["sh", "-c", "cp /bin/busybox /tmp/busybox-suid && chmod 4755 /tmp/busybox-suid && echo ok"])
    assert r == (0, b"ok\n", b""), r
    until(lambda: secret.encode() in c.logs(), what="the container's output")

    root = engine.root
    ctr = engine.store.containers_dir / "sec"
    planted = ctr / "upper" / "tmp" / "busybox-suid"
    image_record = engine.store.image_path(built.id)
    layer_meta = engine.store.layer_dir(built.layer_keys[0]) / "meta.json"
    # As root: all of it is there, so nothing below passes for lack of a file.
    records = [root / "refs.json", image_record, layer_meta] + [p for p in ctr.iterdir() if p.is_file()]
    assert {"config", "log", "meta.json", "state.json"} <= {p.name for p in records}
    assert any(secret.encode() in p.read_bytes() for p in records)  # the log at least
    st = planted.stat()
    owner = subordinate_ids()[0] if userns else 0
    assert st.st_mode & stat.S_ISUID and st.st_mode & 0o001 and st.st_uid == owner, oct(st.st_mode)

    # As the other user: nothing can be read, listed, entered or run.
    for path in records:
        assert_denied(host_user, ["cat", str(path)])
    for d in (ctr / "upper", engine.store.layers_dir, engine.store.containers_dir, root):
        assert_denied(host_user, ["ls", str(d)])
    assert_denied(host_user, ["stat", str(ctr / "upper" / "."), str(ctr / "upper" / "tmp")])
    assert_denied(host_user, [str(planted), "id"])
    # Whatever the umask was (0 here): the walls, and the records behind them.
    closed_to_others(root)
    for path in (image_record, layer_meta):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # The container itself is none the worse: it writes, reads and runs in its layer.
    r = c.exec(["sh", "-c", "echo hi > /tmp/f && cat /tmp/f && /tmp/busybox-suid true && id -u"])
    assert r == (0, b"hi\n0\n", b""), r
    c.stop(timeout=1)
    c.start()
    assert c.exec(["cat", "/tmp/f"]).stdout == b"hi\n"

    # And the other user is told why it cannot use pylxcore at all.
    python, env = user_python(host_user)
    r = as_user(host_user, [python, "-m", "pylxcore", "ps", "--root", str(root)], **env)
    assert r.returncode != 0 and r.stdout == "", r
    assert r.stderr.startswith(f"pylxcore: error: {NEEDS_ROOT}") and len(r.stderr.splitlines()) == 1, r


def test_engine_tells_non_root_callers_that_it_needs_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LXCError, match=NEEDS_ROOT):
        Engine(root=tmp_path / "pxroot")
    assert not (tmp_path / "pxroot").exists()


def test_check_closes_an_old_open_store(open_dir: Path) -> None:
    require_lxc()
    engine = Engine(root=open_dir / "pxroot")
    built = engine.images.build(Image("test/old:1", base="busybox", layers=["echo x > /x"]))
    root = engine.root
    layer = engine.store.layer_dir(built.layer_keys[-1])
    assert engine.check(repair=False) == CheckReport((), ())  # a new root is closed already
    # Opened, as an older pylxcore left it (under the usual umask of 022).
    opened = {root: 0o755, layer: 0o755, root / "refs.json": 0o644}
    opened |= {p: 0o755 for p in root.iterdir() if p.is_dir()}
    opened |= {engine.store.image_path(built.id): 0o644, layer / "meta.json": 0o644}
    for path, mode in opened.items():
        path.chmod(mode)
    os.chown(engine.store.containers_dir, 65534, 65534)  # and a dir its owner could open again
    base = engine.store.layer_dir(built.layer_keys[0]) / "fs"
    inside = (layer / "fs", layer / "fs" / "x", base / "tmp", base / "bin")
    image_modes = {p: p.stat().st_mode for p in inside}

    def said(path: Path, mode: int) -> str:
        name = "the store root" if path == root else str(path.relative_to(root))
        new = 0o700 if mode == 0o755 else 0o600
        owner = "owner uid 65534 -> 0, " if path == engine.store.containers_dir else ""
        return f"closed {name} to other host users ({owner}mode {mode:04o} -> {new:04o})"

    expected = sorted(said(path, mode) for path, mode in opened.items())
    found = engine.check(repair=False)
    assert sorted(found.problems) == expected and not found.repaired
    assert all(stat.S_IMODE(path.stat().st_mode) == mode for path, mode in opened.items())

    report = engine.check()
    assert sorted(report.repaired) == expected and report.consistent, report
    for path, mode in opened.items():
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700 if mode == 0o755 else 0o600, 0), path
    # Inside the layer, the image's own modes are left as they were.
    assert {p: p.stat().st_mode for p in image_modes} == image_modes
    assert engine.check(repair=False) == CheckReport((), ())
    # The store works on as before.
    assert engine.containers.run(built.id, ["cat", "/x"], remove=True).stdout == b"x\n"
