"""A container's files: get_archive/put_archive (running and stopped), cp,
diff, commit, export, top, and the exit codes of programs that cannot run.

Real containers throughout; the comparison with Docker 20.10 itself is in
tests/test_parity_docker.py.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pylxcore import Engine
from pylxcore.cli import main
from pylxcore.errors import InvalidState, NotFound, SpecError
from pylxcore.runtime.changes import Change

REPO = Path(__file__).resolve().parent.parent


def make_tar(*members: tuple[str, str, object]) -> bytes:
    """A tar of (name, kind, value) members: kind "file" (bytes, mode 0o4755,
    uid 123), "dir", "link" (target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.uid, info.gid = 123, 45
            if kind == "file":
                assert isinstance(value, bytes)
                info.size, info.mode = len(value), 0o4755
                tar.addfile(info, io.BytesIO(value))
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.type, info.linkname = tarfile.SYMTYPE, str(value)
                tar.addfile(info)
    return buf.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        fh = tar.extractfile(name)
        assert fh is not None
        return fh.read()


def test_put_and_get_archive_running_then_stopped(engine: Engine, busybox: str) -> None:
    ctr = engine.containers.run(busybox, name="arc1", detach=True)
    tar = make_tar(("d", "dir", None), ("d/tool", "file", b"#!/bin/sh\necho hi\n"),
                   ("d/ln", "link", "/etc/passwd"))
    assert ctr.put_archive("/data", tar) is True
    out = ctr.exec(["stat", "-c", "%a %u %g %N", "/data/d/tool", "/data/d", "/data/d/ln"]).stdout.decode()
    assert out.splitlines() == ["4755 123 45 /data/d/tool", "750 123 45 /data/d",
                                "777 123 45 '/data/d/ln' -> '/etc/passwd'"]
    stream, st = ctr.get_archive("/data/d")
    got = members(b"".join(stream))
    assert st["name"] == "d" and st["mode"] == (1 << 31) | 0o750
    assert sorted(got) == ["d", "d/ln", "d/tool"]
    assert (got["d/tool"].mode, got["d/tool"].uid, got["d/tool"].gid) == (0o4755, 123, 45)
    assert got["d/ln"].issym() and got["d/ln"].linkname == "/etc/passwd"
    # A symlink is copied as itself; with a trailing slash, what it leads to.
    _, st = ctr.get_archive("/data/d/ln")
    assert st["linkTarget"] == "/etc/passwd" and st["mode"] & (1 << 27)
    # What the running container wrote is there for a stopped one too.
    ctr.exec(["sh", "-c", "echo live > /data/live"])
    ctr.stop(timeout=1)
    stream, _ = ctr.get_archive("/data/live")
    assert read_member(b"".join(stream), "live") == b"live\n"
    ctr.put_archive("/", make_tar(("offline", "file", b"written while stopped\n")))
    ctr.put_archive("/", gzip.compress(make_tar(("zipped", "file", b"z\n"))))  # compressed too
    with pytest.raises(NotFound):
        ctr.get_archive("/no/such/path")
    with pytest.raises(SpecError):
        ctr.put_archive("/data/live", make_tar(("x", "file", b"")))  # not a directory
    ctr.start()
    assert ctr.exec(["cat", "/offline"]).stdout == b"written while stopped\n"
    assert ctr.exec(["stat", "-c", "%a", "/offline"]).stdout == b"4755\n"
    assert ctr.exec(["cat", "/zipped"]).stdout == b"z\n"


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_archive_paths_stay_inside_the_container(engine: Engine, busybox: str, tmp_path: Path,
                                                  running: bool) -> None:
    """The container's symlinks to host paths lead into the container's own
    tree, never the host's, for reads and writes; members naming ``..`` are refused."""
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    ctr = engine.containers.run(busybox, name="arc2", detach=True)
    ctr.exec(["sh", "-c", f"ln -s {host} /esc && ln -s ../../../../../../{host} /esc2 && ln -s / /root/up"])
    if not running:
        ctr.stop(timeout=1)
    for path in ("/esc/secret", "/esc2/secret", f"/root/up/{host}/secret"):
        with pytest.raises(NotFound):
            ctr.get_archive(path)
    with pytest.raises(NotFound):
        ctr.put_archive("/esc", make_tar(("planted", "file", b"x")))
    ctr.put_archive("/root/up/tmp", make_tar(("planted", "file", b"x")))  # the container's /tmp
    with pytest.raises(SpecError):
        ctr.put_archive("/tmp", make_tar(("../../../../../planted2", "file", b"x")))
    assert sorted(os.listdir(host)) == ["secret"]
    assert not Path("/tmp/planted").exists() and not Path("/planted2").exists()
    stream, _ = ctr.get_archive("/tmp/planted")
    assert read_member(b"".join(stream), "planted") == b"x"


def test_diff_commit_export_top(engine: Engine, busybox: str, tmp_path: Path) -> None:
    ctr = engine.containers.run(busybox, name="arc3", detach=True)
    ctr.exec(["sh", "-c", "echo new > /newfile && rm /data/base && mkdir -p /newdir/sub"
                          " && echo x >> /etc/passwd"])
    assert ctr.diff() == [
        Change("C", "/data"), Change("D", "/data/base"), Change("C", "/etc"), Change("C", "/etc/passwd"),
        Change("A", "/newdir"), Change("A", "/newdir/sub"), Change("A", "/newfile"),
    ]
    top = ctr.top()
    assert top["Titles"][-1] == "CMD" and [row[-1] for row in top["Processes"]] == ["sleep 3600"]
    exported = members(b"".join(ctr.export()))
    assert "newfile" in exported and "data/base" not in exported and "bin/busybox" in exported
    assert exported["proc"].isdir() and not any(n.startswith("proc/") for n in exported)
    image = ctr.commit("test/committed", "v1", message="my change",
                       changes=["ENV EXTRA=1", 'CMD ["cat", "/newfile"]', "LABEL a=b"])
    assert image.tags == ("test/committed:v1",)
    assert image.config.cmd == ("cat", "/newfile")
    assert image.config.env["EXTRA"] == "1" and image.config.labels["a"] == "b"
    assert ctr.status() == "running"  # paused while copied, then thawed
    out = engine.containers.run("test/committed:v1",
                                ["sh", "-c", "cat /newfile; ls /data; tail -1 /etc/passwd"])
    assert out.stdout == b"new\nx\n"  # /data/base stays deleted: the whiteout was kept
    with pytest.raises(SpecError):
        ctr.commit("test/bad", changes=["RUN echo no"])
    ctr.stop(timeout=1)
    with pytest.raises(InvalidState):
        ctr.top()


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pylxcore", *args], input=stdin, capture_output=True,
                          cwd=REPO, timeout=120, check=False)


def test_cli_cp_diff_commit_and_exit_codes(engine: Engine, busybox: str, tmp_path: Path) -> None:
    root = str(engine.store.root)
    ctr = engine.containers.run(busybox, name="arc4", detach=True)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    os.chmod(src / "a.txt", 0o640)
    assert cli("--root", root, "cp", str(src), "arc4:/data/").returncode == 0
    assert cli("--root", root, "cp", str(src / "a.txt"), "arc4:/data/renamed").returncode == 0
    listing = ctr.exec(["stat", "-c", "%a %u %n", "/data/src/a.txt", "/data/renamed"]).stdout.decode()
    assert listing.splitlines() == ["640 0 /data/src/a.txt", "640 0 /data/renamed"]
    assert cli("--root", root, "cp", "arc4:/data", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back" / "src" / "a.txt").read_text() == "a\n"
    assert stat.S_IMODE((tmp_path / "back" / "renamed").stat().st_mode) == 0o640
    assert cli("--root", root, "cp", "arc4:/data/.", str(tmp_path / "contents")).returncode == 0
    assert sorted(os.listdir(tmp_path / "contents")) == ["base", "renamed", "src"]
    # Tar streams both ways.
    piped = cli("--root", root, "cp", "arc4:/data/base", "-")
    assert piped.returncode == 0 and read_member(piped.stdout, "base") == b"base\n"
    tar_in = make_tar(("in.txt", "file", b"tar\n"))
    assert cli("--root", root, "cp", "-", "arc4:/tmp", stdin=tar_in).returncode == 0
    assert ctr.exec(["cat", "/tmp/in.txt"]).stdout == b"tar\n"
    missing = cli("--root", root, "cp", "arc4:/nope", str(tmp_path / "x"))
    assert missing.returncode == 1 and b"'/nope'" in missing.stderr
    diff = cli("--root", root, "diff", "arc4")
    assert b"A /data/renamed\n" in diff.stdout and b"A /tmp/in.txt\n" in diff.stdout
    committed = cli("--root", root, "commit", "-c", "CMD cat /tmp/in.txt", "arc4", "test/cli-commit:1")
    assert committed.returncode == 0 and committed.stdout.startswith(b"sha256:")
    assert cli("--root", root, "run", "--rm", "test/cli-commit:1").stdout == b"tar\n"
    exported = cli("--root", root, "export", "arc4")
    assert exported.returncode == 0 and "tmp/in.txt" in members(exported.stdout)
    # Docker's exit codes, and a message naming the program.
    for argv, code, words in (
        (["/nope"], 127, b"'/nope': no such file"),
        (["nope"], 127, b"'nope': not found in $PATH"),
        (["/etc/passwd"], 126, b"'/etc/passwd': permission denied"),
        (["/etc"], 126, b"'/etc': is a directory"),
    ):
        proc = cli("--root", root, "run", "--rm", busybox, *argv)
        assert (proc.returncode, words in proc.stderr) == (code, True), proc.stderr
    proc = cli("--root", root, "run", "--rm", "no/such:image", "true")
    assert proc.returncode == 125 and b"no/such:image" in proc.stderr
    assert [c.name for c in engine.containers.list(all=True)] == ["arc4"]  # --rm left nothing


def test_unknown_flag_is_named_not_taken_as_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "--bogus", "2", "L1"]) == 2
    assert "unknown flag: --bogus" in capsys.readouterr().err
    assert main(["ps", "-z"]) == 2
    assert "unknown flag: -z" in capsys.readouterr().err


def test_logs_tail_since_until(engine: Engine, busybox: str) -> None:
    import time

    ctr = engine.containers.run(busybox, ["sh", "-c", "echo 1; echo 2; echo 3"], name="arc5", detach=True)
    ctr.wait(timeout=30)
    root = str(engine.store.root)
    assert cli("--root", root, "logs", "-n", "2", "arc5").stdout == b"2\n3\n"
    assert cli("--root", root, "logs", "--since", "1h", "arc5").stdout == b"1\n2\n3\n"
    assert cli("--root", root, "logs", "--until", "1h", "arc5").stdout == b""
    future = str(int(time.time()) + 3600)
    assert cli("--root", root, "logs", "--until", future, "-n", "1", "arc5").stdout == b"3\n"
    bad = cli("--root", root, "logs", "--since", "yesterday", "arc5")
    assert bad.returncode == 1 and b"'yesterday' is not a time" in bad.stderr


def test_archive_diff_commit_of_a_user_namespaced_container(engine: Engine, busybox: str) -> None:
    """Its files belong to host ids from its range: archives show (and take)
    the container's own ids, and a commit gives them back to the image."""
    ctr = engine.containers.run(busybox, name="arc6", detach=True, userns=True)
    ctr.exec(["sh", "-c", "echo mine > /data/mine && chown 1000:1000 /data/mine"])
    ctr.put_archive("/data", make_tar(("put", "file", b"x")))  # uid 123, gid 45
    assert ctr.exec(["stat", "-c", "%u:%g %n", "/data/mine", "/data/put"]).stdout.decode().splitlines() == [
        "1000:1000 /data/mine", "123:45 /data/put"]
    stream, _ = ctr.get_archive("/data")
    got = members(b"".join(stream))
    assert [(got[n].uid, got[n].gid) for n in ("data", "data/base", "data/mine", "data/put")] == [
        (0, 0), (0, 0), (1000, 1000), (123, 45)]
    assert ctr.diff() == [Change("C", "/data"), Change("A", "/data/mine"), Change("A", "/data/put")]
    ctr.commit("test/from-userns", "1")
    out = engine.containers.run("test/from-userns:1", ["stat", "-c", "%u:%g %n", "/data/mine", "/data/put"])
    assert out.stdout.decode().splitlines() == ["1000:1000 /data/mine", "123:45 /data/put"]
    ctr.stop(timeout=1)
    with pytest.raises(InvalidState, match="user namespace"):
        ctr.get_archive("/data")
