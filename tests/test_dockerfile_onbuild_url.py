"""ONBUILD and ADD of a URL: built by pylxcore and by podman, the same image and the same OnBuild.

The URLs are served by a small HTTP server this test starts on 127.0.0.1
(never the internet); podman's buildah fetches them from the host as the
pylxcore builder does.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylxcore import Engine, Image
from pylxcore.build.progress import BuildEvent
from pylxcore.errors import BuildError, SpecError
from tests.buildcli import cli_build
from tests.test_dockerfile_differential import ADDUSER, Peer, archive
from tests.test_dockerfile_differential import peer as peer  # (the module's fixture)

pytestmark = pytest.mark.slow

LAST_MODIFIED = 1_600_000_000


class Served:
    """Files served over HTTP on 127.0.0.1 from a folder, Last-Modified their mtimes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, name: str, data: bytes, mtime: int = LAST_MODIFIED) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        pass

    def do_GET(self) -> None:
        if self.path != "/broken":
            super().do_GET()
            return
        # A transfer that breaks off: 5 of the 1000 bytes promised, then the end.
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"short")
        self.close_connection = True


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "www").mkdir()
    s = Served(tmp_path / "www")
    try:
        yield s
    finally:
        s.close()


def podman_onbuild(peer: Peer, name: str) -> tuple[str, ...]:
    """The OnBuild of podman's image ``name``, from its Docker config (podman inspect shows none)."""
    saved = peer.top / "saved.tar"
    peer.podman("save", "--format", "docker-archive", "-o", str(saved), name)
    try:
        with tarfile.open(saved) as tf:
            manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
            config = json.load(tf.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    finally:
        saved.unlink()
    return tuple(config["config"].get("OnBuild") or ())


def onbuild_of(peer: Peer, case: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ours, podman's) OnBuild of the image ``build_both`` made for ``case``."""
    name = f"df/{case}:1"
    return peer.engine.images.get(name).config.onbuild, podman_onbuild(peer, name)


PARENT = (
    "FROM busybox\n"
    "ONBUILD ARG WHO=child\n"
    'ONBUILD RUN echo "built by $WHO" \\\n   > /trig\n'
    "ONBUILD COPY --chown=5:6 app/ /app/\n"
    "onbuild env FROM_TRIGGER=1\n"
    "ONBUILD WORKDIR /app\n"
    'ONBUILD LABEL from="trigger"\n'
    "LABEL parent=1\n"
    "RUN echo parent > /parent\n"
)


def test_onbuild_matches_podman(peer: Peer) -> None:
    # The parent keeps its ONBUILD instructions as Docker writes them, and runs none.
    peer.build_both("onbuild-parent", PARENT, {"app/x": b"parent's\n"})
    ours, theirs = onbuild_of(peer, "onbuild-parent")
    assert ours == theirs
    assert ours == (
        "ARG WHO=child",
        'RUN echo "built by $WHO"    > /trig',
        "COPY --chown=5:6 app/ /app/",
        "env FROM_TRIGGER=1",
        "WORKDIR /app",
        'LABEL from="trigger"',
    )
    # A child FROM it runs them first, with its own context; its OnBuild is its own.
    child = "FROM df/onbuild-parent:1\nRUN cat /trig > seen && pwd >> seen\nONBUILD RUN echo grandchild\n"
    peer.build_both("onbuild-child", child, {"app/x": b"child's\n", "app/sub/y": b"y\n"})
    assert onbuild_of(peer, "onbuild-child") == (("RUN echo grandchild",), ("RUN echo grandchild",))
    # The grandchild runs the child's trigger only: triggers are not inherited.
    peer.build_both("onbuild-grandchild", "FROM df/onbuild-child:1\n", {})
    assert onbuild_of(peer, "onbuild-grandchild") == ((), ())
    # A stage FROM an earlier stage runs that stage's triggers too (the earlier
    # stage, the target, keeps them).
    multi = (
        "FROM busybox AS base\nONBUILD RUN echo stage > /trig\nONBUILD COPY a.txt /\n"
        "FROM base\nRUN cat /trig /a.txt > /seen\n"
    )
    peer.build_both("onbuild-stage", multi, {"a.txt": b"a\n"})
    assert onbuild_of(peer, "onbuild-stage") == ((), ())
    peer.build_both("onbuild-stage-target", multi, {"a.txt": b"a\n"}, target="base")
    assert onbuild_of(peer, "onbuild-stage-target") == (("RUN echo stage > /trig", "COPY a.txt /"),) * 2


def test_add_url_matches_podman(peer: Peer, served: Served) -> None:
    u = served.url
    served.put("file.txt", b"served\n")
    served.put("archive.tar.gz", archive("gz"))  # ADD of a URL never unpacks
    served.put("dir/page.html", b"<p>page</p>\n", mtime=LAST_MODIFIED + 86400)
    dockerfile = (
        "FROM busybox\n" + ADDUSER + f"ADD {u}/file.txt /dl/\n"
        f"ADD {u}/file.txt /dl/renamed\n"
        f"ADD {u}/archive.tar.gz /dl/\n"
        f"ADD --chown=app:app {u}/dir/page.html?v=1 /web/\n"
        f"ADD --chown=7:8 --chmod=640 {u}/file.txt /dl/owned\n"
        f"ADD a.txt {u}/dir/page.html /mixed/\n"
        "WORKDIR /w\n"
        f"ADD {u}/file.txt .\n"
    )
    times = ("dl/file.txt", "dl/archive.tar.gz", "web/page.html", "dl/owned", "w/file.txt")
    ours, theirs = peer.build_both("add-url", dockerfile, {"a.txt": b"a\n"}, times=times)
    assert ours == theirs
    assert ours["web/page.html"] == LAST_MODIFIED + 86400 and ours["dl/file.txt"] == LAST_MODIFIED


def test_add_url_cache_and_errors(engine: Engine, served: Served, tmp_path: Path) -> None:
    served.put("f", b"one\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {served.url}/f /f\nRUN cat /f > /g\n")

    def build() -> list[bool]:
        cached: list[bool] = []

        def progress(ev: BuildEvent) -> None:
            if ev.kind == "step" and ev.index > 0:
                cached.append(bool(ev.cached))

        engine.images.build(Image.from_dockerfile(ctx / "Dockerfile", name="url:1"), progress=progress)
        return cached

    assert build() == [False, False]
    assert build() == [True, True]  # fetched again: the same bytes, the same layers
    served.put("f", b"two\n")
    assert build() == [False, False]
    out = engine.containers.run("url:1", ["sh", "-c", "cat /g; stat -c %a /f"], remove=True)
    assert out.stdout == b"two\n600\n"
    # A build that fetches a URL is never answered by the command line's record.
    for _ in range(2):
        b = cli_build(engine.root, "-t", "url:2", str(ctx), name="url:2", check=False)
        assert b.code == 0 and b.path == "real", b.err
    (served.folder / "f").unlink()
    with pytest.raises(BuildError, match="the server answered 404") as info:
        build()
    assert info.value.instruction == f"Dockerfile:2 ADD {served.url}/f /f"
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD {served.url}/broken /f\n")
    with pytest.raises(BuildError, match="/broken failed: the transfer broke off at byte 5 of 1000"):
        build()
    assert os.listdir(engine.root / "tmp") == []  # the fetch's staging folder is gone
    served.close()
    with pytest.raises(BuildError, match=f"cannot fetch {served.url}/broken: .*Connection refused"):
        build()
    # The image's YAML form cannot say it.
    with pytest.raises(SpecError, match="no YAML form"):
        Image.from_dockerfile(ctx / "Dockerfile", name="url:1").to_yaml()


def test_onbuild_survives_export_and_import(engine: Engine, tmp_path: Path) -> None:
    # OnBuild travels in the OCI config as Docker's does: an imported parent
    # keeps its triggers, and a child built FROM the import runs them.
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nONBUILD RUN echo triggered > /trig\nLABEL parent=1\n")
    engine.images.build(Image.from_dockerfile(ctx / "Dockerfile", name="ob/parent:1"), context=ctx)
    archive_path = engine.images.export("ob/parent:1", tmp_path / "parent.tar", format="oci-archive")
    with tarfile.open(archive_path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))  # type: ignore[arg-type]
    assert config["config"]["OnBuild"] == ["RUN echo triggered > /trig"]
    other = Engine(root=tmp_path / "other")
    try:
        imported = other.images.import_(archive_path, name="ob/imported:1")
        assert imported.config.onbuild == ("RUN echo triggered > /trig",)
        (ctx / "Dockerfile").write_text("FROM ob/imported:1\n")
        child = Image.from_dockerfile(ctx / "Dockerfile", name="ob/child:1", engine=other)
        other.images.build(child, context=ctx)
        assert other.containers.run("ob/child:1", ["cat", "/trig"], remove=True).stdout == b"triggered\n"
    finally:
        other.close()
