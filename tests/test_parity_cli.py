"""docker's other daily commands on real containers: create, wait, pause,
unpause, history, info, version, the image/container/system groups, the
prunes (asking first unless -f), ps and images filters and templates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pylxcore import Engine
from pylxcore.spec import Image

REPO = Path(__file__).resolve().parent.parent


def cli(engine: Engine, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylxcore", "--root", str(engine.store.root), *args],
                          input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def test_create_wait_pause_and_groups(engine: Engine, busybox: str) -> None:
    created = cli(engine, "create", "--name", "c1", "-l", "role=job", busybox, "sh", "-c", "exit 4")
    assert created.returncode == 0 and len(created.stdout.strip()) == 64
    inspected = cli(engine, "inspect", "-f", "{{.State.Status}} {{.Config.Labels.role}}", "c1")
    assert inspected.stdout == "created job\n"
    assert cli(engine, "start", "c1").returncode == 0
    assert cli(engine, "wait", "c1").stdout == "4\n"
    listed = cli(engine, "container", "ls", "-a", "--filter", "exited=4", "--format", "{{.Names}}")
    assert listed.stdout == "c1\n"
    engine.containers.run(busybox, name="c2", detach=True)
    assert cli(engine, "pause", "c2").stdout == "c2\n"
    paused = cli(engine, "ps", "--filter", "status=paused", "-q").stdout
    assert paused.strip() == engine.containers.get("c2").id[:12]
    assert cli(engine, "unpause", "c2").returncode == 0
    assert cli(engine, "container", "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", "c2").stdout \
        == "true false\n"
    assert cli(engine, "ps", "-l", "--format", "{{.Names}} {{.State}}").stdout == "c2 running\n"
    assert cli(engine, "ps", "-n", "2", "--format", "{{.Names}}").stdout == "c2\nc1\n"
    # rename: a stopped container keeps its id and logs; a running one keeps running.
    c1_id = engine.containers.get("c1").id
    assert cli(engine, "rename", "c1", "c1b").returncode == 0
    assert engine.containers.get("c1b").id == c1_id and not engine.containers.exists("c1")
    assert cli(engine, "start", "c1b").returncode == 0 and cli(engine, "wait", "c1b").stdout == "4\n"
    assert cli(engine, "rename", "c2", "c2b").returncode == 0
    assert cli(engine, "inspect", "-f", "{{.Name}} {{.State.Status}}", "c2b").stdout == "/c2b running\n"
    assert cli(engine, "exec", "c2b", "true").returncode == 0
    assert cli(engine, "rename", "c2b", "c2").returncode == 0
    taken = cli(engine, "rename", "c1b", "c2")
    assert taken.returncode == 1 and "'c2'" in taken.stderr
    assert cli(engine, "rename", "c1b", "c1").returncode == 0
    size = cli(engine, "ps", "-s")
    assert size.stdout.splitlines()[0].endswith("SIZE")
    bad = cli(engine, "ps", "--filter", "colour=red")
    assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr
    # the other groups
    history = cli(engine, "image", "history", busybox).stdout.splitlines()
    assert history[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert "RUN mkdir -p /data" in history[1] and history[2].startswith("<missing>")
    info = cli(engine, "info").stdout
    assert "Containers: 2\n Running: 1\n Paused: 0\n Stopped: 1\nImages: 1\n" in info
    assert "liblxc:" in cli(engine, "version").stdout
    assert cli(engine, "system", "df").stdout.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE",
                                                                          "RECLAIMABLE"]
    assert cli(engine, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout == f"{busybox}\n"


def test_prunes_ask_first(engine: Engine, busybox: str) -> None:
    engine.containers.run(busybox, ["true"], name="done1")
    engine.containers.run(busybox, name="up1", detach=True)
    answer_no = cli(engine, "container", "prune", stdin="n\n")
    assert "Are you sure you want to continue? [y/N]" in answer_no.stdout
    assert engine.containers.exists("done1")
    pruned = cli(engine, "container", "prune", "-f")
    assert engine.containers.get("up1").id not in pruned.stdout and "Deleted Containers:" in pruned.stdout
    assert not engine.containers.exists("done1") and engine.containers.exists("up1")
    # An unused tagged image goes only with -a; one a container uses stays.
    engine.images.build(Image("test/unused:1", base="busybox", layers=["echo x > /x"]))
    engine.images.tag("test/unused:1", "test/unused:2")
    assert cli(engine, "image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    assert engine.images.exists("test/unused:1")
    out = cli(engine, "system", "prune", "-a", stdin="y\n").stdout
    assert "untagged: test/unused:1" in out and "untagged: test/unused:2" in out
    assert not engine.images.exists("test/unused:1") and engine.images.exists(busybox)
    assert [i.tags for i in engine.images.list()] == [(busybox,)]


def test_images_filters(engine: Engine, busybox: str) -> None:
    engine.images.build(Image("other/thing:2", base="busybox", labels={"team": "a"}, layers=["echo y > /y"]))
    fmt = ("--format", "{{.Repository}}:{{.Tag}}")
    assert cli(engine, "images", "--filter", "reference=test/*", *fmt).stdout == f"{busybox}\n"
    assert cli(engine, "images", "--filter", "reference=other/thing", *fmt).stdout == "other/thing:2\n"
    assert cli(engine, "images", "--filter", "label=team=a", *fmt).stdout == "other/thing:2\n"
    assert cli(engine, "images", "--filter", "dangling=true", *fmt).stdout == ""
    assert cli(engine, "images", "--filter", "since=" + busybox, *fmt).stdout == "other/thing:2\n"
    table = cli(engine, "images", "--format", "table {{.ID}}\t{{.Repository}}").stdout.splitlines()
    assert table[0] == "IMAGE ID       REPOSITORY"


def test_image_exports_moved_to_save(engine: Engine, busybox: str, tmp_path: Path) -> None:
    import tarfile

    saved = cli(engine, "save", "--format", "rootfs", busybox, "-o", str(tmp_path / "new.tar"))
    assert saved.returncode == 0 and saved.stderr == "", saved.stderr
    old = cli(engine, "export", busybox, "--format", "rootfs", "-o", str(tmp_path / "old.tar"))
    assert old.returncode == 0 and "deprecated: use save --format rootfs -o PATH" in old.stderr
    names = [sorted(tarfile.open(tmp_path / f).getnames()) for f in ("new.tar", "old.tar")]
    assert names[0] == names[1] and any(n.endswith("data/base") for n in names[0])
    streamed = cli(engine, "save", "--format", "lxc", busybox)
    assert streamed.returncode == 1 and "lxc export is not a stream: give it with -o PATH" in streamed.stderr
    assert cli(engine, "save", "--format", "lxc", busybox, "-o", str(tmp_path / "lxc")).returncode == 0
    assert (tmp_path / "lxc" / "rootfs.tar.xz").is_file()


def test_write_tar_matches_tarfile(tmp_path: Path) -> None:
    """cp's tar writer (sendfile for the bytes) writes what tarfile's add writes."""
    import os
    import tarfile

    from pylxcore.cli.files import write_tar

    src = tmp_path / "src"
    (src / "sub" / ("long-" * 30)).mkdir(parents=True)
    (src / "sub" / "f").write_bytes(os.urandom(70_000))
    os.chmod(src / "sub" / "f", 0o4751)
    os.link(src / "sub" / "f", src / "hard")
    os.symlink("sub/f", src / "ln")
    os.mkfifo(src / "fifo")
    (src / "sub" / ("long-" * 30) / "empty").write_bytes(b"")

    def members(path: Path) -> list[tuple[object, ...]]:
        with tarfile.open(path) as tar:
            out: list[tuple[object, ...]] = []
            for m in tar.getmembers():
                data = tar.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
                out.append((m.name, m.type, m.mode, m.size, m.linkname, m.uid, m.mtime, data))
            return out

    for keep_owner in (False, True):
        with open(tmp_path / "ours.tar", "wb") as fh:
            write_tar(fh, str(src), "data", keep_owner=keep_owner)
        with tarfile.open(tmp_path / "theirs.tar", "w", format=tarfile.PAX_FORMAT) as tar:
            def owner(info: tarfile.TarInfo, keep_owner: bool = keep_owner) -> tarfile.TarInfo:
                if not keep_owner:
                    info.uid = info.gid = 0
                info.uname = info.gname = ""
                return info
            tar.add(str(src), arcname="data", filter=owner)
        assert members(tmp_path / "ours.tar") == members(tmp_path / "theirs.tar")
