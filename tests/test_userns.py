"""userns=True: container root is an unprivileged host uid; the image's layers
are shared, idmapped, never copied or chowned. (The escape suite runs in this
mode too: tests/test_escape.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylxcore import Engine, LXCError, Mount
from pylxcore.build.bases import tree_digest
from pylxcore.runtime import userns as userns_module
from pylxcore.runtime.userns import subordinate_ids
from pylxcore.supervisor.mounts import USERNS_ROOTFS
from tests.conftest import until

SLEEPER = ["sleep", "3600"]


def owners(tree: Path) -> set[tuple[int, int]]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out.add((st.st_uid, st.st_gid))
    return out


def test_container_root_is_an_unprivileged_host_uid(engine: Engine, busybox: str) -> None:
    ustart, ucount, gstart, _ = subordinate_ids()
    layers = [engine.store.layer_dir(k) / "fs" for k in engine.images.get(busybox).layer_keys]
    before = {str(p): (tree_digest(p), owners(p)) for p in layers}
    mounts_before = Path("/proc/self/mountinfo").read_text()

    a = engine.containers.run(busybox, SLEEPER, detach=True, userns=True, name="ua")
    b = engine.containers.run(busybox, SLEEPER, detach=True, userns=True, name="ub")
    assert a.inspect()["userns"] is True
    r = a.exec(["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox; echo mine > /etc/motd"])
    assert r.exit_code == 0, r
    uid, uid_map, busybox_owner, _ = r.stdout.decode().split("\n", 3)
    assert uid == "0" and busybox_owner == "0"  # root inside, and the image's files are root's
    assert uid_map.split() == ["0", str(ustart), str(ucount)]
    # On the host, what the container wrote belongs to the mapped uid.
    written = a.dir / "upper" / "etc" / "motd"
    assert (written.stat().st_uid, written.stat().st_gid) == (ustart, gstart)
    # The other container shares the layers and does not see it.
    assert b.exec(["cat", "/etc/motd"]).exit_code != 0
    # Its mounts live in the supervisor's own namespace: the host sees none.
    assert Path("/proc/self/mountinfo").read_text() == mounts_before

    a.stop(timeout=1)
    a.start()  # the writable layer survives stop/start
    assert a.exec(["cat", "/etc/motd"]).stdout == b"mine\n"
    for c in (a, b):
        c.remove(force=True)
    # The shared layers are exactly as they were: not copied, not chowned.
    assert {str(p): (tree_digest(p), owners(p)) for p in layers} == before


def test_engine_default_and_foreground_runs(engine: Engine, busybox: str, tmp_path: Path) -> None:
    ustart = subordinate_ids()[0]
    mapped = Engine(root=engine.root, userns=True)
    result = mapped.containers.run(busybox, ["cat", "/proc/self/uid_map"], remove=True)
    assert result.stdout.split()[:2] == [b"0", str(ustart).encode()]
    plain = mapped.containers.run(busybox, ["cat", "/proc/self/uid_map"], remove=True, userns=False)
    assert plain.stdout.split()[:2] == [b"0", b"0"]
    with pytest.raises(TypeError, match="userns"):
        Engine(root=engine.root, userns="yes")  # type: ignore[arg-type]
    # The store root lies under pytest's tmp, closed to others (0700): the
    # mapped root reaches its lxcpath all the same (see pylxcore.supervisor.mounts.userns_rootfs).
    assert any(not p.stat().st_mode & 0o001 for p in engine.root.parents)
    # Root in there is nobody out here: a host file only root may read, bound
    # in, stays closed to it.
    secret = tmp_path / "secret"
    secret.write_text("host only\n")
    secret.chmod(0o600)
    bound = [Mount(str(secret), "/secret")]
    r = mapped.containers.run(busybox, ["cat", "/secret"], mounts=bound, remove=True)
    assert r.exit_code != 0 and b"Permission denied" in r.stderr
    r = mapped.containers.run(busybox, ["cat", "/secret"], mounts=bound, remove=True, userns=False)
    assert r.stdout == b"host only\n"


def test_no_subordinate_ids_is_a_clear_error(
    engine: Engine, busybox: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\n# root:5:5\nroot:x:1\n")
    assert userns_module._range(str(subuid)) is None
    subuid.write_text("alice:100000:65536\nroot:2000000:100000\n")
    assert userns_module._range(str(subuid)) == (2000000, 65536)
    monkeypatch.setattr(userns_module, "_range", lambda path: None)
    with pytest.raises(LXCError, match="subordinate id range for root in /etc/subuid and /etc/subgid"):
        engine.containers.run(busybox, ["true"], userns=True)
    assert engine.containers.list(all=True) == []


def test_run_remove_cycles_leave_nothing(engine: Engine, busybox: str) -> None:
    mounts_before = Path("/proc/self/mountinfo").read_text()
    layers = [engine.store.layer_dir(k) / "fs" for k in engine.images.get(busybox).layer_keys]
    digests = [tree_digest(p) for p in layers]
    for i in range(20):
        r = engine.containers.run(busybox, ["sh", "-c", f"echo {i} > /n; cat /n"], userns=True, remove=True)
        assert r == (0, f"{i}\n".encode(), b""), (i, r)
    c = engine.containers.run(busybox, SLEEPER, detach=True, userns=True)
    c.remove(force=True)
    # Removed by their own supervisors, which first leave the namespace where
    # the image's layers are mounted inside the container's dir.
    for _ in range(3):
        engine.containers.run(busybox, ["touch", "/x"], detach=True, remove=True, userns=True)
    until(lambda: os.listdir(engine.store.containers_dir) == [], what="auto-removal")
    assert [tree_digest(p) for p in layers] == digests
    engine.close()
    assert Path("/proc/self/mountinfo").read_text() == mounts_before
    assert os.listdir(engine.store.containers_dir) == []
    # Each namespace makes USERNS_ROOTFS in a tmpfs of its own: the host never has it.
    assert not os.path.exists(USERNS_ROOTFS)
