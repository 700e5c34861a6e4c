"""``pylxcore build`` answered from its stamp: only when nothing it read changed.

Each build runs as a real ``python -m pylxcore`` process; the probe says
whether the library was loaded (the slow path) or the stamp answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from pylxcore import Engine
from pylxcore.build.stamp import parse_build_argv

# Runs the command line like the `pylxcore` script, then tells on stderr
# whether the library's spec module was loaded (it is for every real build).
PROBE = """
import sys
sys.argv = ["pylxcore", *sys.argv[1:]]
from pylxcore.__main__ import main
code = main()
print("PATH=" + ("slow" if "pylxcore.spec" in sys.modules else "stamp"), file=sys.stderr)
sys.exit(code)
"""


class Build(NamedTuple):
    code: int
    out: str
    path: str
    image_id: str


def build(root: Path, *args: str) -> Build:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--root", str(root), "build", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    path = proc.stderr.strip().splitlines()[-1].removeprefix("PATH=")
    assert proc.returncode == 0, proc.stderr
    refs = json.loads((root / "refs.json").read_text())
    return Build(proc.returncode, proc.stdout, path, refs.get("stamp/site:1", ""))


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "site-v1").mkdir(parents=True)
    (ctx / "site-v1" / "index.html").write_text("one\n")
    (ctx / "site-v2").mkdir()
    (ctx / "site-v2" / "index.html").write_text("two\n")
    (ctx / "site").symlink_to("site-v1")
    (ctx / "conf").write_text("a=1\n")
    (ctx / "image.yaml").write_text(
        "name: stamp/site:1\n"
        "base: busybox\n"
        "layers:\n"
        "  - copy: {src: site/, dest: /www}\n"
        "  - copy: {src: conf, dest: /etc/site.conf}\n"
        "  - env: {MODE: test}\n"
    )
    return ctx


def test_an_unchanged_build_is_answered_from_its_stamp(engine: Engine, context: Path) -> None:
    root = engine.root
    yaml = str(context / "image.yaml")
    first = build(root, yaml)
    assert first.path == "slow" and first.image_id
    again = build(root, yaml)
    assert again.path == "stamp" and again.image_id == first.image_id
    # It prints what the library prints for a cached build.
    assert "Step 1/3 : COPY site/ /www  [CACHED]" in again.out
    assert again.out.strip().endswith("Successfully tagged stamp/site:1")
    assert build(root, "-q", yaml).out.strip() == first.image_id  # -q: only the id
    assert build(root, str(context)).path == "stamp"  # the folder names its image.yaml


def test_every_input_and_output_sends_the_build_back_to_the_library(engine: Engine, context: Path) -> None:
    root = engine.root
    yaml = str(context / "image.yaml")
    first = build(root, yaml)
    assert build(root, yaml).path == "stamp"

    # A copied file changes (same size): a new image.
    (context / "site-v1" / "index.html").write_text("uno\n")
    changed = build(root, yaml)
    assert changed.path == "slow" and changed.image_id != first.image_id
    assert build(root, yaml).path == "stamp"

    # A symlink on the way to a copy source is repointed.
    (context / "site").unlink()
    (context / "site").symlink_to("site-v2")
    repointed = build(root, yaml)
    assert repointed.path == "slow" and repointed.image_id not in (first.image_id, changed.image_id)

    # A file added to a copied folder; a mode changed.
    (context / "site-v2" / "new.css").write_text("")
    added = build(root, yaml)
    assert added.path == "slow" and added.image_id != repointed.image_id
    os.chmod(context / "conf", 0o600)
    assert build(root, yaml).path == "slow"

    # The YAML itself: a comment changes nothing built, but the text is new.
    before = build(root, yaml).image_id
    with open(yaml, "a") as fh:
        fh.write("# a comment\n")
    commented = build(root, yaml)
    assert commented.path == "slow" and commented.image_id == before

    # The tag was moved away or removed: the library tags it again.
    engine.images.remove("stamp/site:1")
    retagged = build(root, yaml)
    assert retagged.path == "slow" and retagged.image_id == before

    # The image and its layers were pruned away: the library builds them again.
    engine.images.remove("stamp/site:1")
    engine.prune()
    assert not list((root / "cache" / "build-stamps").glob("*.json"))  # prune drops stamps
    rebuilt = build(root, yaml)
    assert rebuilt.path == "slow" and rebuilt.image_id == before
    assert engine.images.get("stamp/site:1").id == before

    # Other options are other builds.
    assert build(root, "--no-cache", yaml).path == "slow"
    assert build(root, "-t", "stamp/other:2", yaml).path == "slow"
    assert build(root, "-t", "stamp/other:2", yaml).path == "stamp"
    assert engine.images.get("stamp/other:2").id == before


def test_a_layer_removed_under_a_stamp_is_rebuilt(engine: Engine, context: Path) -> None:
    root = engine.root
    yaml = str(context / "image.yaml")
    first = build(root, yaml)
    assert build(root, yaml).path == "stamp"
    key = engine.images.get("stamp/site:1").layer_keys[-1]
    # Half-removed (as a crash mid-prune leaves it), then repaired away.
    os.unlink(engine.store.layer_dir(key) / "meta.json")
    assert engine.check().repaired
    again = build(root, yaml)
    assert again.path == "slow" and again.image_id == first.image_id
    assert engine.store.has_layer(key)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["build", "f.yaml"], ("R", "f.yaml", [], False)),
        (["--root", "/x", "build", "-q", "f.yaml"], ("/x", "f.yaml", [], True)),
        (["build", "f.yaml", "--root=/x", "-t", "a:1", "--tag=b:2"], ("/x", "f.yaml", ["a:1", "b:2"], False)),
        (["build", "--no-cache", "f.yaml"], None),
        (["build", "--debug", "f.yaml"], None),
        (["build", "--help"], None),
        (["build"], None),
        (["build", "a.yaml", "b.yaml"], None),
        (["run", "img"], None),
        (["--root", "", "build", "f.yaml"], None),
        ([], None),
    ],
)
def test_parse_build_argv(
    argv: list[str], expected: tuple[str, str, list[str], bool] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYLXCORE_ROOT", "/R")
    got = parse_build_argv(argv)
    if expected is None:
        assert got is None
        return
    root, file, tags, quiet = expected
    assert got == (
        os.path.abspath("/R" if root == "R" else root),
        os.path.abspath(file),
        tags,
        quiet,
    )
