"""Builds on real liblxc: the cache, whiteouts, failures, concurrency, bases."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pylxcore import BuildError, BuildEvent, Engine, Image, ImageNotFound, Layer, SpecError
from pylxcore.runtime import liblxc


@pytest.fixture
def count_containers(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Records every container the builder starts (the real call still runs)."""
    started: list[list[str]] = []
    real = liblxc.execute_argv

    def counting(name: str, lxcpath: str, argv: list[str], log_file: str, **kw: Any) -> list[str]:
        started.append(argv)
        return real(name, lxcpath, argv, log_file, **kw)

    monkeypatch.setattr(liblxc, "execute_argv", counting)
    return started


def steps(n: int, tag: str = "") -> list[Layer]:
    return [Layer.run(f"echo {tag}{i} > /f{i}", network="none") for i in range(n)]


def test_cache_hit_runs_nothing(engine: Engine, count_containers: list[list[str]]) -> None:
    image = Image("cache/test:1", layers=steps(4))
    first = engine.images.build(image)
    assert len(count_containers) == 4
    assert [s.cached for s in first.layers] == [False] * 5
    events: list[BuildEvent] = []
    second = engine.images.build(image, progress=events.append)
    assert len(count_containers) == 4, "a cached rebuild must not start any container"
    assert all(s.cached for s in second.layers)
    assert second.id == first.id
    assert [e.cached for e in events if e.kind == "step"] == [True] * 5


def test_editing_layer_k_rebuilds_k_and_above(engine: Engine, count_containers: list[list[str]]) -> None:
    layers = steps(5)
    engine.images.build(Image("cache/k:1", layers=layers))
    count_containers.clear()
    layers[2] = Layer.run("echo changed > /f2", network="none")
    rebuilt = engine.images.build(Image("cache/k:1", layers=layers))
    assert [s.cached for s in rebuilt.layers] == [True, True, True, False, False, False]
    assert len(count_containers) == 3
    out = engine.containers.run("cache/k:1", ["cat", "/f1", "/f2", "/f4"], remove=True)
    assert out.stdout == b"1\nchanged\n4\n"


def test_no_cache_rebuilds_everything(engine: Engine, count_containers: list[list[str]]) -> None:
    image = Image("cache/nc:1", layers=steps(2))
    first = engine.images.build(image)
    again = engine.images.build(image, no_cache=True)
    assert not any(s.cached for s in again.layers)
    assert again.id != first.id
    assert len(count_containers) == 4


def test_copy_cache_follows_bytes_and_mode(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "site").mkdir(parents=True)
    page = ctx / "site" / "index.html"
    page.write_text("v1")
    page.chmod(0o644)
    image = Image("copy/test:1", layers=[Layer.copy("site/", "/www/"), "echo after > /after"])

    def cached() -> list[bool]:
        return [s.cached for s in engine.images.build(image, context=ctx).layers]

    assert cached() == [False, False, False]
    assert cached() == [True, True, True]
    page.write_text("v2")
    assert cached() == [True, False, False]
    page.chmod(0o600)
    assert cached() == [True, False, False]
    os.utime(page, (1, 1))  # time alone does not change what is copied
    assert cached() == [True, True, True]
    out = engine.containers.run(
        "copy/test:1", ["sh", "-c", "cat /www/index.html; stat -c %a /www/index.html"], remove=True
    )
    assert out.stdout == b"v2600\n"


def test_whiteout_in_layer_3_hides_file_of_layer_1(engine: Engine) -> None:
    built = engine.images.build(
        Image(
            "wh/test:1",
            layers=[
                "mkdir -p /d && echo one > /d/a && echo keep > /d/b",
                "echo two > /other",
                "rm /d/a && rm -r /bin/vi",
            ],
        )
    )
    top = engine.store.layer_dir(built.layer_keys[-1]) / "fs"
    st = os.lstat(top / "d" / "a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "the deletion is an overlayfs whiteout in the layer"
    lower = engine.store.layer_dir(built.layer_keys[1]) / "fs" / "d" / "a"
    assert lower.read_text() == "one\n", "the lower layer is untouched"
    out = engine.containers.run("wh/test:1", ["sh", "-c", "ls /d; ls /bin/vi 2>&1; true"], remove=True)
    assert out.stdout.splitlines()[0] == b"b"
    assert b"No such file" in out.stdout


def test_build_error_fields_and_nothing_left(engine: Engine) -> None:
    engine.images.build(Image("fail/test:1", layers=["echo ok"]))
    layers_before = set(engine.store.layer_keys())
    with pytest.raises(BuildError) as info:
        engine.images.build(
            Image("fail/test:2", layers=["echo ok", "echo first; echo second >&2; exit 42", "echo never"])
        )
    err = info.value
    assert (err.step, err.layer_index) == (2, 1), "step as progress numbers it; the index in Image.layers"
    assert err.exit_code == 42
    assert "exit 42" in err.instruction
    assert err.output_tail[-2:] == ["first", "second"]
    assert "step 2" in str(err) and "42" in str(err)
    assert set(engine.store.layer_keys()) == layers_before


def test_a_failing_base_is_step_0_and_no_layer(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        engine.images.build(Image("fail/base:1", base=f"tar:{tmp_path}/missing.tar"))
    assert (info.value.step, info.value.layer_index) == (0, None), info.value
    assert info.value.instruction.startswith("FROM")
    assert list(engine.store.tmp_dir.iterdir()) == []
    with pytest.raises(ImageNotFound):
        engine.images.get("fail/test:2")


def test_failing_copy_source_is_spec_error(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "secret").write_text("no")
    os.symlink("../secret", tmp_path / "ctx" / "link")
    for src in ("../secret", "link", "missing"):
        with pytest.raises(SpecError) as info:
            engine.images.build(Image("bad/copy:1", layers=[Layer.copy(src, "/x")]), context=tmp_path / "ctx")
        assert src in str(info.value)
    assert list(engine.store.tmp_dir.iterdir()) == []


def test_copy_never_follows_a_planted_symlink_out(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "payload").write_text("inside")
    outside = tmp_path / "host-target"
    outside.mkdir()
    engine.images.build(
        Image(
            "sym/test:1",
            layers=[
                f"ln -s / /target && ln -s {outside} /abs",
                Layer.copy("payload", "/target/etc/planted"),
                Layer.copy("payload", "/abs/planted"),
            ],
        ),
        context=ctx,
    )
    assert not Path("/etc/planted").exists()
    assert not (outside / "planted").exists()
    out = engine.containers.run("sym/test:1", ["cat", "/etc/planted", f"{outside}/planted"], remove=True)
    assert out.stdout == b"insideinside"


def test_env_workdir_steps_and_image_config(engine: Engine) -> None:
    built = engine.images.build(
        Image(
            "cfg/test:1",
            env={"A": "1"},
            workdir="/app",
            layers=[Layer.env(B="2"), "echo $A$B > here", Layer.workdir("/other"), "pwd > /where"],
            cmd=["cat", "/app/here", "/where"],
            user="root",
            labels={"k": "v"},
        )
    )
    assert built.config.env == {"A": "1", "B": "2"}
    assert built.config.workdir == "/other"
    assert built.config.labels == {"k": "v"}
    out = engine.containers.run("cfg/test:1", remove=True)
    assert out.stdout == b"12\n/other\n"


def test_image_collection(engine: Engine) -> None:
    built = engine.images.build(Image("coll/a:1", layers=["echo a > /a"]))
    assert engine.images.get("coll/a:1").id == built.id
    assert engine.images.get(built.id[7:19]).id == built.id
    engine.images.tag("coll/a:1", "coll/a:stable")
    assert set(engine.images.get("coll/a:stable").tags) == {"coll/a:1", "coll/a:stable"}
    assert [im.id for im in engine.images.list()] == [built.id]
    engine.images.remove("coll/a:1")
    assert engine.images.get("coll/a:stable").id == built.id
    engine.images.remove("coll/a:stable")
    assert engine.images.list() == []
    assert engine.store.layer_keys() == []
    with pytest.raises(ImageNotFound):
        engine.images.get("coll/a:1")


def test_layers_in_use_are_never_removed(engine: Engine) -> None:
    engine.images.build(Image("use/base:1", layers=["echo a > /a"]))
    engine.images.build(Image("use/top:1", base="image:use/base:1", layers=["echo b > /b"]))
    c = engine.containers.create("use/top:1", ["true"])
    engine.images.remove("use/base:1")
    assert engine.images.get("use/top:1")
    from pylxcore import Conflict

    with pytest.raises(Conflict):
        engine.images.remove("use/top:1")
    engine.prune()
    assert engine.containers.list(all=True) == [], "prune removes the stopped container"
    engine.images.remove("use/top:1")
    engine.prune()
    assert engine.store.layer_keys() == []
    del c


_CONCURRENT = """
import sys
from pylxcore import Engine, Image
e = Engine(root=sys.argv[1])
b = e.images.build(Image("same/img:1", layers=["sleep 0.3; echo x > /x", "echo y > /y"]))
print(b.id)
"""


def test_two_processes_build_the_same_image(engine: Engine) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(engine.root)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert ids[0] == ids[1]
    assert len(engine.store.layer_keys()) == 3, "one set of layers: base + 2"
    assert list(engine.store.tmp_dir.iterdir()) == []


def _make_tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"\x00\x01bytes\xff")
    os.chmod(root / "dir" / "file", 0o4751)
    (root / "dir" / "sub" / "owned").write_text("owned")
    os.chown(root / "dir" / "sub" / "owned", 1234, 5678)
    os.chmod(root / "dir" / "sub", 0o710)
    os.symlink("../dir/file", root / "dir" / "sub" / "link")
    os.link(root / "dir" / "file", root / "dir" / "hard")
    (root / "bin").mkdir()
    os.symlink("/bin/busybox", root / "bin" / "sh")


def _describe(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            data = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else None)
            hard = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not p.is_dir() else None
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, data, hard)
    return out


@pytest.mark.parametrize("kind", ["dir", "tar", "tar.gz", "tar.xz", "tar.zst"])
def test_dir_and_tar_bases_round_trip(engine: Engine, tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(src)
    if kind == "dir":
        base = f"dir:{src}"
    else:
        archive = tmp_path / f"rootfs.{kind}"
        plain = tmp_path / "rootfs.tar"
        with tarfile.open(plain, "w") as tf:
            for entry in sorted(src.iterdir()):
                tf.add(entry, arcname=entry.name)
        compress = {"tar.gz": ["gzip", "-k"], "tar.xz": ["xz", "-k"], "tar.zst": ["zstd", "-q"]}.get(kind)
        if compress:
            subprocess.run([*compress, str(plain)], check=True)
        base = f"tar:{archive}"
    built = engine.images.build(Image(f"base/{kind.replace('.', '-')}:1", base=base))
    layer = engine.store.layer_dir(built.layer_keys[0]) / "fs"
    assert _describe(layer) == _describe(src)
    again = engine.images.build(Image(f"base/{kind.replace('.', '-')}:1", base=base))
    assert again.layers[0].cached


def test_image_base_builds_on_another_image(engine: Engine, count_containers: list[list[str]]) -> None:
    parent = engine.images.build(Image("chain/parent:1", layers=["echo p > /p"]))
    child = engine.images.build(Image("chain/child:1", base="image:chain/parent:1", layers=["echo c > /c"]))
    assert child.layer_keys[: len(parent.layer_keys)] == parent.layer_keys
    assert len(count_containers) == 2
    out = engine.containers.run("chain/child:1", ["cat", "/p", "/c"], remove=True)
    assert out.stdout == b"p\nc\n"
    with pytest.raises(ImageNotFound):
        engine.images.build(Image("chain/orphan:1", base="image:chain/missing:1"))


def test_busybox_base_is_offline_and_static(engine: Engine) -> None:
    built = engine.images.build(Image("bb/test:1"))
    root = engine.store.layer_dir(built.layer_keys[0]) / "fs"
    assert (root / "bin" / "busybox").is_file()
    assert oct((root / "tmp").stat().st_mode & 0o7777) == "0o1777"
    out = engine.containers.run("bb/test:1", ["sh", "-c", "echo $((6*7)); ls /usr/bin | wc -l"], remove=True)
    lines = out.stdout.split()
    assert lines[0] == b"42" and int(lines[1]) > 50


def test_build_progress_prints_steps(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    engine.images.build(Image("prog/test:1", layers=["echo visible-output"]), progress=True)
    out = capsys.readouterr().out
    assert "Step 1/1 : RUN echo visible-output" in out
    assert "visible-output" in out.split("Step 1/1")[1]


def test_network_none_step_has_only_loopback(engine: Engine) -> None:
    engine.images.build(Image("net/test:1", layers=[Layer.run("ls /sys/class/net > /nets", network="none")]))
    out = engine.containers.run("net/test:1", ["cat", "/nets"], remove=True)
    assert out.stdout.split() == [b"lo"]


@pytest.mark.slow
def test_debian_base_via_debootstrap(engine: Engine) -> None:
    built = engine.images.build(Image("deb/test:1", base="debian:bookworm", layers=["echo hi > /hi"]))
    out = engine.containers.run(
        "deb/test:1", ["sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME; cat /hi"], remove=True
    )
    assert out.stdout == b"bookworm\nhi\n"
    assert built.layers[0].size > 50_000_000
