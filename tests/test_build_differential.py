"""Every way to build gives the same image and the same output, whatever changed in between.

Random sequences of edits to a build's inputs: context files (bytes, times,
a file swapped for a symlink, a symlink repointed), ``dir:`` and ``tar:``
bases behind symlinks, the image an ``image:`` base names, and the YAML.
After each, the image is built through every path: the library in-process,
the command line with its record replay enabled, the command line with it
disabled, and the command line again (which a record written by the one
before can answer). All must agree on the image id, and the command lines
on their output: byte for byte when a replay answered from the run before,
else but for the measured durations.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from pylxcore import Engine, Image, Layer
from tests.buildcli import cli_build, untimed

# Tens of real builds through the CLI: the full suite runs it, the fast lane does not.
pytestmark = pytest.mark.slow

NAME = "diff/img:1"
BASE = "diff/base:1"

# (op, variant): the variant picks which file, target or setting an op touches.
OPS = ("edit", "touch", "file_to_link", "repoint", "dir_base", "tar_base", "image_base", "yaml")
# Optional layers of the YAML, in the order they appear.
OPTIONAL = ("run", "link", "sub", "dlink", "b", "env")


def _tar(path: Path, files: dict[str, bytes]) -> None:
    """Write a tar in place (same size for same-sized files: only its bytes tell)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    with open(path, "r+b" if path.exists() else "wb") as fh:
        fh.write(buf.getvalue())
        fh.truncate()


def _relink(link: Path, target: str) -> None:
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


class World:
    """A build context, its bases and its YAML, and the edits the test makes to them."""

    def __init__(self, engine: Engine, top: Path) -> None:
        self.engine = engine
        self.ctx = top / "ctx"
        self.bases = top / "bases"
        (self.ctx / "sub").mkdir(parents=True)
        (self.ctx / "sub2").mkdir()
        for name in ("a.txt", "b.txt", "sub/c.txt", "sub2/c.txt"):
            (self.ctx / name).write_text(f"{name} 0\n")
        (self.ctx / "sub" / "l").symlink_to("c.txt")
        (self.ctx / "link").symlink_to("a.txt")
        (self.ctx / "dlink").symlink_to("sub")
        for version in ("A", "B"):
            (self.bases / version / "etc").mkdir(parents=True)
            (self.bases / version / "etc" / "version").write_text(f"{version}0\n")
        (self.bases / "dir").symlink_to("A")
        _tar(self.bases / "t1.tar", {"etc/version": b"t1-0\n"})
        _tar(self.bases / "t2.tar", {"etc/version": b"t2-0\n"})
        (self.bases / "base.tar").symlink_to("t1.tar")
        self.base_kind = "busybox"
        self.layers = {"run": True, "link": True, "sub": False, "dlink": False, "b": False, "env": False}
        self.env = 0
        self.counter = 0
        self.base_version = 0
        self.build_base_image()
        self.write_yaml()

    @property
    def yaml(self) -> Path:
        return self.ctx / "image.yaml"

    def build_base_image(self) -> None:
        self.engine.images.build(Image(BASE, base="busybox", layers=[Layer.env(V=str(self.base_version))]))

    def write_yaml(self) -> None:
        base = {
            "busybox": "busybox",
            "image": f"image:{BASE}",
            "dir": f"dir:{self.bases / 'dir'}",
            "tar": f"tar:{self.bases / 'base.tar'}",
        }[self.base_kind]
        lines = [f"name: {NAME}", f"base: {base}", "layers:"]
        if self.layers["run"] and self.base_kind in ("busybox", "image"):
            lines.append("  - {run: echo ran > /ran, network: none}")
        lines.append("  - copy: {src: a.txt, dest: /a.txt}")
        for flag, line in (
            ("link", "  - copy: {src: link, dest: /link.txt}"),
            ("sub", "  - copy: {src: sub/, dest: /sub}"),
            ("dlink", "  - copy: {src: dlink/, dest: /d}"),
            ("b", "  - copy: {src: b.txt, dest: /b.txt}"),
            ("env", f"  - env: {{E: '{self.env}'}}"),
        ):
            if self.layers[flag]:
                lines.append(line)
        self.yaml.write_text("\n".join(lines) + "\n")

    def apply(self, op: str, variant: int) -> None:
        self.counter += 1
        ctx, n = self.ctx, self.counter
        files = ("a.txt", "b.txt", "sub/c.txt")
        if op == "edit":
            path = ctx / files[variant % 3]
            if path.is_symlink():
                path.unlink()
            # Same length each time: only the bytes (or a racy stat) can tell.
            path.write_text(f"{path.name} {n % 10}\n")
        elif op == "touch":
            os.utime(ctx / files[variant % 3])
        elif op == "file_to_link":
            b = ctx / "b.txt"
            if b.is_symlink():
                b.unlink()
                b.write_text(f"b.txt {n % 10}\n")
            else:
                _relink(b, "a.txt" if variant % 2 else "sub/c.txt")
        elif op == "repoint":
            if variant % 2:
                current = os.readlink(ctx / "link")
                _relink(ctx / "link", "b.txt" if current == "a.txt" else "a.txt")
            else:
                current = os.readlink(ctx / "dlink")
                _relink(ctx / "dlink", "sub2" if current == "sub" else "sub")
        elif op == "dir_base":
            if variant % 2:
                current = os.readlink(self.bases / "dir")
                _relink(self.bases / "dir", "B" if current == "A" else "A")
            else:
                target = self.bases / os.readlink(self.bases / "dir")
                (target / "etc" / "version").write_text(f"{target.name}{n % 10}\n")
        elif op == "tar_base":
            if variant % 2:
                current = os.readlink(self.bases / "base.tar")
                _relink(self.bases / "base.tar", "t2.tar" if current == "t1.tar" else "t1.tar")
            else:
                target = self.bases / os.readlink(self.bases / "base.tar")
                _tar(target, {"etc/version": f"{target.stem}-{n % 10}\n".encode()})
        elif op == "image_base":
            self.base_version = variant % 3  # the same one again is a no-op retag
            self.build_base_image()
        elif op == "yaml":
            choice = variant % 8
            if choice < len(OPTIONAL):
                flag = OPTIONAL[choice]
                self.layers[flag] = not self.layers[flag]
            elif choice == 6:
                self.base_kind = ("busybox", "dir", "tar", "image")[(variant // 8) % 4]
            else:
                self.env += 1
                self.layers["env"] = True
            self.write_yaml()


def _check_every_path(world: World, quiet: bool) -> dict[str, Any]:
    root = world.engine.root
    args = ["-q", str(world.yaml)] if quiet else [str(world.yaml)]
    library = world.engine.images.build(Image.load(world.yaml)).id
    fast = cli_build(root, *args, name=NAME)
    real = cli_build(root, *args, name=NAME, replay=False)
    again = cli_build(root, *args, name=NAME)
    assert fast.image_id == real.image_id == again.image_id == library
    assert untimed(fast.out) == untimed(real.out) == untimed(again.out)
    if again.path == "replay":
        assert again.out == real.out  # the record the real path just wrote
    if quiet:
        assert fast.out == library + "\n"
    # Shown by --hypothesis-show-statistics: how often each path answered.
    event(f"after an edit: {fast.path}; once more: {again.path}")
    return {"fast": fast.path, "again": again.path}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    quiet=st.booleans(),
    ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 31)), min_size=1, max_size=6),
)
def test_every_build_path_agrees(
    engine: Engine, tmp_path: Path, quiet: bool, ops: list[tuple[str, int]]
) -> None:
    world = World(engine, Path(tempfile.mkdtemp(dir=tmp_path)))
    note(f"start: {_check_every_path(world, quiet)}")
    for op, variant in ops:
        world.apply(op, variant)
        note(f"{op}/{variant}: {_check_every_path(world, quiet)}")


@pytest.fixture(autouse=True)
def _no_replay_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYLXCORE_BUILD_REPLAY", raising=False)
