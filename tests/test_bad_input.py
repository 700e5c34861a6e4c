"""Bad input to every public call: a typed error naming the bad value, and
nothing on disk changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from pylxcore import Engine, Image, Layer, Limits, Mount, PylxcoreError

BAD_NAMES = [
    "",
    " ",
    "../x",
    "a/../../b",
    "/abs",
    "UPPER",
    "with space",
    "tab\tname",
    "new\nline",
    "nul\0byte",
    "ünïcode",
    "emoji-😀",
    "x" * 300,
    "a:b:c",
    "name:",
    ":tag",
    ".hidden",
    "-dash",
]


def snapshot(root: Path) -> list[tuple[str, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "locks" in Path(dirpath).parts:
            continue  # lock files are created on demand and hold no state
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out.append((os.path.relpath(p, root), os.lstat(p).st_size if not os.path.isdir(p) else 0))
    return sorted(out)


def expect_rejected(engine: Engine, call: Callable[[], Any], bad: object) -> None:
    before = snapshot(engine.root)
    with pytest.raises((PylxcoreError, TypeError, ValueError)) as info:
        call()
    text = str(info.value)
    if isinstance(bad, str) and bad and len(bad) < 100 and "\0" not in bad:
        assert repr(bad) in text or bad in text or bad.strip() in text, f"{text!r} does not name {bad!r}"
    assert snapshot(engine.root) == before, "a rejected call changed the store"


@pytest.mark.parametrize("bad", [n for n in BAD_NAMES if n != "UPPER"])  # Docker allows upper case here
def test_bad_container_names(engine: Engine, busybox: str, bad: str) -> None:
    expect_rejected(engine, lambda: engine.containers.create(busybox, ["true"], name=bad), bad)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_image_refs(engine: Engine, busybox: str, bad: str) -> None:
    expect_rejected(engine, lambda: engine.images.tag(busybox, bad), bad)
    expect_rejected(engine, lambda: engine.images.build(Image(bad)), bad)
    expect_rejected(engine, lambda: engine.containers.create(bad, ["true"]), bad)
    expect_rejected(engine, lambda: engine.images.remove(bad), bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda e, img: e.containers.create(img, []),
        lambda e, img: e.containers.create(img, [""] * 0 + [None]),
        lambda e, img: e.containers.create(img, 42),
        lambda e, img: e.containers.create(img, ["a\0b"]),
        lambda e, img: e.containers.create(img, ["true"], env={"A=B": "x"}),
        lambda e, img: e.containers.create(img, ["true"], env={"": "x"}),
        # (A newline in a value is fine, as in Docker: tests/test_config_injection.py.)
        lambda e, img: e.containers.create(img, ["true"], env={"A": "nul\0"}),
        lambda e, img: e.containers.create(img, ["true"], env={1: "x"}),
        lambda e, img: e.containers.create(img, ["true"], network="nosuch"),
        lambda e, img: e.containers.create(img, ["true"], workdir="relative"),
        lambda e, img: e.containers.create(img, ["true"], user="nosuchuser"),
        lambda e, img: e.containers.create(img, ["true"], limits={"memory": "1M"}),
        lambda e, img: e.containers.create(img, ["true"], limits=Limits(cpuset="99")),
        lambda e, img: e.containers.create(img, ["true"], limits=Limits(cpus=512)),
        lambda e, img: e.containers.create(img, ["true"], mounts=[Mount("/nonexistent-pxtest", "/x")]),
        lambda e, img: e.containers.create(img, ["true"], mounts=["/tmp:/x"]),
        lambda e, img: e.containers.get(""),
        lambda e, img: e.containers.get(None),
        lambda e, img: e.containers.get("../../etc"),
        lambda e, img: e.images.get(None),
        lambda e, img: e.images.get("sha256:" + "0" * 64),
        lambda e, img: e.images.build("not an image"),
        lambda e, img: e.images.export(img, "/tmp/pxtest-never", format="zip"),
    ],
)
def test_bad_arguments(engine: Engine, busybox: str, call: Callable[[Engine, str], Any]) -> None:
    expect_rejected(engine, lambda: call(engine, busybox), None)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Limits(memory="64Q"),
        lambda: Limits(memory=-1),
        lambda: Limits(memory="9" * 40),
        lambda: Limits(cpus=0),
        lambda: Limits(cpus="lots"),
        lambda: Limits(pids=0),
        lambda: Limits(cpuset="0-"),
        lambda: Mount("relative", "/x"),
        lambda: Mount("/tmp", "relative"),
        lambda: Mount("/tmp", "/x/../../y"),
        lambda: Layer.run(""),
        lambda: Layer.run("x", network="bridge"),
        lambda: Layer.copy("/etc/passwd", "/x"),
        lambda: Layer.copy("../up", "/x"),
        lambda: Layer.workdir("relative"),
        lambda: Layer.env({"BAD NAME": "x"}),
        lambda: Image("ok:1", base="ftp://x"),
        lambda: Image("ok:1", base="tar:/x.rar"),
        lambda: Image("ok:1", layers=[42]),
        lambda: Image("ok:1", cmd=[]),
        lambda: Image("ok:1", workdir="rel"),
    ],
)
def test_bad_values(make: Callable[[], Any]) -> None:
    with pytest.raises((PylxcoreError, TypeError, ValueError)):
        make()
