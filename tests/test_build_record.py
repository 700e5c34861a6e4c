"""``pylxcore build`` replayed from its build record: only when everything it read still holds.

Each build runs as a real ``python -m pylxcore`` process; the probe says
whether the library ran (the real path) or the record answered (replay).
A record is written by a real build that found every step cached, so after
a change it takes one real build that does the work and one that finds it
cached before the next is replayed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from pylxcore import Engine, Image, Layer
from pylxcore.build import record
from pylxcore.build.recorder import Session
from pylxcore.engine import DEFAULT_ROOT
from tests.buildcli import Build, cli_build

NAME = "rec/site:1"


def build(root: Path, *args: str, cwd: Path | None = None) -> Build:
    return cli_build(root, *args, name=NAME, cwd=cwd)


def replayed_build(root: Path, *args: str, cwd: Path | None = None, name: str = NAME) -> tuple[Build, Build]:
    """Build until the record answers: (the real build that wrote the record, the
    replay). More than twice only when someone edits pylxcore's own files
    meanwhile: they are inputs too."""
    last = None
    for _ in range(5):
        b = cli_build(root, *args, name=name, cwd=cwd)
        if b.path == "replay" and last is not None:
            return last, b
        last = b
    raise AssertionError(f"no replay after five builds of {args}")


def settled_build(root: Path, *args: str, cwd: Path | None = None, name: str = NAME) -> Build:
    """Build until the record answers; the replay."""
    return replayed_build(root, *args, cwd=cwd, name=name)[1]


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
        f"name: {NAME}\n"
        "base: busybox\n"
        "layers:\n"
        "  - copy: {src: site/, dest: /www}\n"
        "  - copy: {src: conf, dest: /etc/site.conf}\n"
        "  - env: {MODE: test}\n"
    )
    return ctx


def test_an_unchanged_build_is_replayed_byte_for_byte(engine: Engine, context: Path) -> None:
    root = engine.root
    yaml = str(context / "image.yaml")
    first = build(root, yaml)
    assert first.path == "real" and "[RUN]" in first.out
    # The next build finds every step cached and leaves a record; the one after replays it.
    cached, again = replayed_build(root, yaml)
    assert cached.path == "real" and "[RUN]" not in cached.out
    assert again.image_id == first.image_id
    # What the real path printed, byte for byte (its durations included).
    assert again.out == cached.out
    assert again.out.endswith(f"Successfully tagged {NAME}\n")
    # Each command line has its own record: -q, and the folder naming its image.yaml.
    assert settled_build(root, "-q", yaml).out == first.image_id + "\n"
    assert settled_build(root, str(context)).image_id == first.image_id
    records = list((root / record.RECORDS).glob("*.json"))
    assert len(records) == 3
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in records)
    doc = json.loads(records[0].read_text())
    assert doc["schema"] == record.SCHEMA and doc["root"] == str(root)


def test_every_input_and_output_sends_the_build_back_to_the_library(engine: Engine, context: Path) -> None:
    root = engine.root
    yaml = str(context / "image.yaml")
    first = settled_build(root, yaml)

    # A copied file changes (same size): a new image.
    (context / "site-v1" / "index.html").write_text("uno\n")
    changed = build(root, yaml)
    assert changed.path == "real" and changed.image_id != first.image_id
    assert settled_build(root, yaml).image_id == changed.image_id

    # A symlink on the way to a copy source is repointed.
    (context / "site").unlink()
    (context / "site").symlink_to("site-v2")
    repointed = build(root, yaml)
    assert repointed.path == "real" and repointed.image_id not in (first.image_id, changed.image_id)
    settled_build(root, yaml)

    # A file added to a copied folder; a mode changed; a file touched (same image, read again).
    (context / "site-v2" / "new.css").write_text("")
    added = build(root, yaml)
    assert added.path == "real" and added.image_id != repointed.image_id
    settled_build(root, yaml)
    os.chmod(context / "conf", 0o600)
    assert build(root, yaml).path == "real"
    settled_build(root, yaml)
    os.utime(context / "conf")
    touched = build(root, yaml)
    assert touched.path == "real" and "[RUN]" not in touched.out

    # The YAML itself: a comment changes nothing built, but the text is new.
    before = settled_build(root, yaml).image_id
    with open(yaml, "a") as fh:
        fh.write("# a comment\n")
    commented = build(root, yaml)
    assert commented.path == "real" and commented.image_id == before
    settled_build(root, yaml)

    # The tag was removed: the library tags it again.
    engine.images.remove(NAME)
    retagged = build(root, yaml)
    assert retagged.path == "real" and retagged.image_id == before
    settled_build(root, yaml)

    # The image and its layers were pruned away: the library builds them again.
    engine.images.remove(NAME)
    engine.prune()
    assert not (root / record.RECORDS).exists()  # prune drops the records
    rebuilt = build(root, yaml)
    assert rebuilt.path == "real" and rebuilt.image_id == before
    assert engine.images.get(NAME).id == before

    # Other options are other command lines; --no-cache is never replayed.
    for _ in range(2):
        assert build(root, "--no-cache", yaml).path == "real"
    other = cli_build(root, "-t", "rec/other:2", yaml, name="rec/other:2")
    assert other.path == "real" and other.image_id == before
    other = settled_build(root, "-t", "rec/other:2", yaml, name="rec/other:2")
    assert other.out.endswith("Successfully tagged rec/other:2\n")
    # An extra -t name that is removed sends it back too.
    settled_build(root, "-t", "rec/a:1", "-t", "rec/b:1", yaml, name="rec/b:1")
    engine.images.remove("rec/b:1")
    extra = cli_build(root, "-t", "rec/a:1", "-t", "rec/b:1", yaml, name="rec/b:1")
    assert extra.path == "real" and extra.image_id == before


def test_a_layer_removed_under_a_record_is_rebuilt(engine: Engine, context: Path) -> None:
    root = engine.root
    yaml = str(context / "image.yaml")
    first = settled_build(root, yaml)
    key = engine.images.get(NAME).layer_keys[-1]
    # Half-removed (as a crash mid-prune leaves it), then repaired away.
    os.unlink(engine.store.layer_dir(key) / "meta.json")
    assert engine.check().repaired
    again = build(root, yaml)
    assert again.path == "real" and again.image_id == first.image_id and "[RUN]" in again.out
    assert engine.store.has_layer(key)


def _tar(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_a_base_behind_a_repointed_symlink_is_a_new_base(engine: Engine, tmp_path: Path, kind: str) -> None:
    """The regression: the old stamp lstat'ed the link where the library
    followed it, and printed the old image after the link was repointed."""
    bases = tmp_path / "bases"
    bases.mkdir()
    if kind == "dir":
        for version in ("A", "B"):
            (bases / version / "etc").mkdir(parents=True)
            (bases / version / "etc" / "version").write_text(version)
        link, first_target, second_target = bases / "current", "A", "B"
    else:
        _tar(bases / "a.tar", {"etc/version": b"A"})
        _tar(bases / "b.tar", {"etc/version": b"B"})
        link, first_target, second_target = bases / "current.tar", "a.tar", "b.tar"
    link.symlink_to(first_target)
    yaml = tmp_path / "image.yaml"
    yaml.write_text(f"name: {NAME}\nbase: {kind}:{link}\nlayers:\n  - env: {{X: '1'}}\n")
    old = settled_build(engine.root, str(yaml))

    link.unlink()
    link.symlink_to(second_target)
    new = build(engine.root, str(yaml))
    assert new.path == "real" and new.image_id != old.image_id
    assert engine.images.build(Image.load(yaml)).id == new.image_id
    assert settled_build(engine.root, str(yaml)).image_id == new.image_id


def test_an_image_base_is_replayed_as_the_library_prints_it(engine: Engine, tmp_path: Path) -> None:
    engine.images.build(Image("rec/base:1", base="busybox", layers=[Layer.env(V="1")]))
    yaml = tmp_path / "image.yaml"
    (tmp_path / "f").write_text("f")
    yaml.write_text(f"name: {NAME}\nbase: image:rec/base:1\nlayers:\n  - copy: {{src: f, dest: /f}}\n")
    real = build(engine.root, str(yaml))
    cached, replayed = replayed_build(engine.root, str(yaml))
    assert cached.path == "real"
    assert replayed.out == cached.out  # and no line of its own (the old stamp printed one)
    assert replayed.out.splitlines()[0] == "Step 0/1 : FROM image:rec/base:1  [CACHED]"
    # The base image is rebuilt under its name: a new base, so a new copy layer on it.
    engine.images.build(Image("rec/base:1", base="busybox", layers=[Layer.env(V="2")]))
    moved = build(engine.root, str(yaml))
    assert moved.path == "real" and moved.image_id != real.image_id
    assert moved.image_id == engine.images.build(Image.load(yaml)).id


def test_a_build_that_wrote_to_stderr_is_not_recorded(engine: Engine, context: Path) -> None:
    yaml = str(context / "image.yaml")
    for _ in range(3):
        debug = build(engine.root, "--debug", yaml)
        assert debug.path == "real" and "DEBUG" in debug.err


def test_the_record_is_only_for_the_same_folder(engine: Engine, context: Path, tmp_path: Path) -> None:
    settled_build(engine.root, "image.yaml", cwd=context)
    assert build(engine.root, "image.yaml", cwd=context).path == "replay"
    (tmp_path / "image.yaml").write_text(f"name: {NAME}\nbase: busybox\n")
    elsewhere = build(engine.root, "image.yaml", cwd=tmp_path)
    assert elsewhere.path == "real" and "COPY" not in elsewhere.out


# -- the record's facts and its replay, without LXC ------------------------------------


def test_the_replay_looks_where_the_library_keeps_its_default_store() -> None:
    assert record.DEFAULT_ROOT == DEFAULT_ROOT
    hint = record.store_hint
    assert hint(["build", "f"], {}, "/w") == DEFAULT_ROOT
    assert hint(["build", "f"], {"PYLXCORE_ROOT": "r"}, "/w") == "/w/r"
    assert hint(["--root", "/x", "build", "f"], {"PYLXCORE_ROOT": "r"}, "/w") == "/x"
    assert hint(["build", "--root=y", "f"], {}, "/w") == "/w/y"


def _write_record(
    root: Path, argv: list[str], facts: list[record.Fact], *, schema: int = record.SCHEMA
) -> None:
    inv = record.invocation(argv, {}, "/w")
    doc = record.document(invocation=inv, root=str(root), image_id="sha256:x", facts=facts, stdout="hello\n")
    doc["schema"] = schema
    path = Path(record.record_file(str(root), inv))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_a_replay_prints_only_when_every_fact_holds(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / record.RECORDS).mkdir(parents=True)
    argv = ["--root", str(root), "build", "f"]
    f = tmp_path / "f"
    f.write_text("x")
    link = tmp_path / "link"
    link.symlink_to("f")
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"a:1": "sha256:x"}))
    facts = [
        record.stat_fact(str(f), os.stat(f), follow=False),
        record.stat_fact(str(link), os.lstat(link), follow=False, target="f"),
        record.stat_fact(str(link), os.stat(link), follow=True, sha256=hashlib.sha256(b"x").hexdigest()),
        record.stat_fact(str(tmp_path), os.stat(tmp_path), follow=False, names=sorted(os.listdir(tmp_path))),
        record.realpath_fact(str(link), str(f)),
        record.exists_fact(str(tmp_path / "none"), False),
        record.ref_fact(str(refs), "a:1", "sha256:x"),
    ]

    def replayed(argv: list[str] = argv, env: dict[str, str] | None = None) -> tuple[int | None, str]:
        out = io.StringIO()
        code = record.replay(argv, environ=env or {}, cwd="/w", out=out)
        return code, out.getvalue()

    _write_record(root, argv, facts)
    assert replayed() == (0, "hello\n")
    assert replayed(env={record.REPLAY_ENV: "0"}) == (None, "")
    assert replayed([*argv, "-q"]) == (None, "")  # another invocation: no record
    for broken in (
        {**facts[0], "id": [0, 0, 0, 0, 0, 0]},
        {**facts[1], "target": "g"},
        {**facts[2], "sha256": "0" * 64},
        {**facts[3], "names": []},
        {**facts[4], "value": "/elsewhere"},
        {**facts[5], "value": True},
        {**facts[6], "value": "sha256:y"},
        {"kind": "unknown", "path": "/"},
        {**facts[0], "path": str(tmp_path / "gone")},
    ):
        _write_record(root, argv, [*facts, broken])
        assert replayed() == (None, ""), broken
    _write_record(root, argv, facts, schema=record.SCHEMA + 1)
    assert replayed() == (None, "")
    Path(record.record_file(str(root), record.invocation(argv, {}, "/w"))).write_text("{not json")
    assert replayed() == (None, "")


def test_a_session_passes_output_through_and_records_nothing_without_a_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    with Session(["ps"], environ={}, cwd="/w") as session:
        print("a table")
        print("x" * (1 << 20))  # past what a session copies
        print("a warning", file=sys.stderr)
        assert sys.stdout is not out
    assert sys.stdout is out and sys.stderr is err
    assert out.getvalue().startswith("a table\n") and err.getvalue() == "a warning\n"
    assert session.save(0) is None
