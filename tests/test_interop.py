"""Interop with tools no one here wrote: OCI images through skopeo and podman
both ways, LXC's image pair through lxc-create/lxc-execute, Incus's tarball
layout, and the rootfs tar as a base again.

podman always runs on a store of the test's own, removed afterwards:
``--root`` under tmp_path, ``--runroot`` in a short private dir under /tmp
(podman refuses runroots longer than 50 characters), the vfs driver (nothing
mounted), runc, cgroupfs, no events, no network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pylxcore import Engine, Image, SpecError, StorageError
from pylxcore.transfer.imageconfig import host_platform
from pylxcore.transfer.lxcimage import lxc_arch
from tests.conftest import missing as missing_requirement

# Round trips through podman and skopeo: the full suite runs them, the fast lane does not.
pytestmark = pytest.mark.slow

APP = "interop/app:1"
# What the image's cmd prints: the same bytes under pylxcore, podman and lxc-execute.
APP_OUTPUT = b"hello from pylxcore\n/data:\nkeep\n\n/opq:\nnew\n"


def need_tools(*names: str) -> None:
    """Skip when a tool is missing (apt-get install -y podman runc skopeo); under CI=true, fail."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    missing_requirement(f"needs {', '.join(missing)} (apt-get install -y podman runc skopeo)")


def build_app(engine: Engine) -> None:
    """A busybox image: a layer writes files, a later one deletes one and replaces a directory."""
    engine.images.build(
        Image(
            APP,
            base="busybox",
            layers=[
                "mkdir -p /data /opq && echo keep > /data/keep && echo gone > /data/gone"
                " && echo old > /opq/old",
                # rm of a lower file -> whiteout; rm -rf + mkdir of a lower dir -> opaque dir
                "rm /data/gone && rm -rf /opq && mkdir /opq && echo new > /opq/new",
            ],
            env={"GREETING": "hello"},
            workdir="/data",
            labels={"org.example.test": "interop"},
            cmd=["sh", "-c", 'echo "$GREETING from pylxcore"; ls /data /opq'],
        )
    )


def store_is_empty(engine: Engine) -> None:
    store = engine.store
    assert list(store.tmp_dir.iterdir()) == [], "staging left behind"
    assert list(store.layers_dir.iterdir()) == [], "layers left behind"
    assert list(store.images_dir.iterdir()) == [], "image records left behind"
    assert store.read_refs() == {}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------
# podman on a store of the test's own
# ---------------------------------------------------------------------------


# No network; and crun/runc need explicit limits on this host's hybrid cgroup layout.
RUN_OPTIONS = ("--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")


class Podman:
    def __init__(self, base: Path, runroot: Path) -> None:
        self.base = base
        self.runroot = runroot
        (base / "tmp").mkdir(parents=True)
        options = {
            "--root": str(base / "root"),
            "--runroot": str(runroot),
            "--tmpdir": str(base / "libpod"),
            "--storage-driver": "vfs",
            "--runtime": "runc",
            "--cgroup-manager": "cgroupfs",
            "--events-backend": "none",
        }
        self.argv = ["podman", *(word for pair in options.items() for word in pair)]
        self.env = {**os.environ, "TMPDIR": str(base / "tmp")}

    def __call__(
        self, *args: str, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=300,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def run(self, image: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--rm", *RUN_OPTIONS, image, *cmd)


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    need_tools("podman", "runc")
    # podman refuses a runroot path longer than 50 characters: a short one of the test's own.
    p = Podman(tmp_path / "podman", Path(tempfile.mkdtemp(prefix="pxpod-", dir="/tmp")))
    try:
        yield p
    finally:
        p("rm", "--all", "--force", check=False)
        p("rmi", "--all", "--force", check=False)
        with open("/proc/self/mountinfo") as fh:
            mounts = [line for line in fh if str(p.base) in line or str(p.runroot) in line]
        shutil.rmtree(p.base, ignore_errors=True)
        shutil.rmtree(p.runroot, ignore_errors=True)
    assert not mounts, f"podman left mounts: {mounts}"


def busybox_root_tar(path: Path) -> Path:
    """A tiny root filesystem with the host's static busybox, for ``podman import``."""
    from pylxcore.build.bases import busybox_path

    root = path.parent / "podman-rootfs"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True)
    shutil.copy2(busybox_path(), root / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "ls", "rm", "test", "pwd", "mkdir"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "victim").write_text("delete me\n")
    with tarfile.open(path, "w") as tar:
        tar.add(root, arcname=".")
    shutil.rmtree(root)
    return path


# ---------------------------------------------------------------------------
# OCI export: skopeo and podman accept it
# ---------------------------------------------------------------------------


def test_oci_export_is_read_by_skopeo_and_runs_in_podman(
    engine: Engine, podman: Podman, tmp_path: Path
) -> None:
    need_tools("skopeo")
    build_app(engine)
    assert engine.containers.run(APP, remove=True).stdout == APP_OUTPUT

    layout = engine.images.export(APP, tmp_path / "layout", format="oci")
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:{APP}"], capture_output=True, text=True, check=False
    )
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    assert info["Architecture"] == host_platform()[0] and info["Os"] == "linux"
    assert len(info["Layers"]) == 3
    assert info["Labels"] == {"org.example.test": "interop"}
    assert "GREETING=hello" in info["Env"] and any(e.startswith("PATH=") for e in info["Env"])
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci:{layout}"], capture_output=True, check=True
        ).stdout
    )
    assert config["config"]["Cmd"] == ["sh", "-c", 'echo "$GREETING from pylxcore"; ls /data /opq']
    assert config["config"]["WorkingDir"] == "/data"
    assert len(config["rootfs"]["diff_ids"]) == 3
    assert [h.get("empty_layer", False) for h in config["history"]] == [False, False, False]

    archive = engine.images.export(APP, tmp_path / "app.tar", format="oci-archive")
    loaded = podman("load", "-i", str(archive)).stdout
    name = loaded.strip().splitlines()[-1].split(":", 1)[1].strip()
    assert name.endswith(APP), loaded
    assert podman.run(name).stdout.encode() == APP_OUTPUT
    check = podman.run(
        name, "sh", "-c", "test ! -e /data/gone && test ! -e /opq/old && pwd && echo $GREETING"
    )
    assert check.stdout == "/data\nhello\n"


def test_oci_export_layer_tars(engine: Engine, tmp_path: Path) -> None:
    """Whiteouts and opaque dirs as .wh. entries; fixed times, numeric owners, clean gzip headers."""
    build_app(engine)
    layout = engine.images.export(APP, tmp_path / "layout")
    index = json.loads((layout / "index.json").read_text())
    assert (layout / "oci-layout").exists()
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == APP
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"][7:]).read_text())
    blobs = [layout / "blobs" / "sha256" / d["digest"][7:] for d in manifest["layers"]]
    for blob in blobs:
        head = blob.read_bytes()[:10]
        assert head[:2] == b"\x1f\x8b" and head[3] & 0x08 == 0, "a gzip header without a file name"
        assert head[4:8] == b"\0\0\0\0", "a gzip header without a time"
        with tarfile.open(blob) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == sorted((m.name for m in members), key=lambda n: n.split("/"))
        assert {(m.mtime, m.uname, m.gname) for m in members} == {(0, "", "")}
    with tarfile.open(blobs[2]) as tar:
        top = {m.name: m for m in tar.getmembers()}
    assert set(top) == {"data", "data/.wh.gone", "opq", "opq/.wh..wh..opq", "opq/new"}
    assert top["data/.wh.gone"].isreg() and top["data/.wh.gone"].size == 0


def test_oci_export_is_reproducible(engine: Engine, tmp_path: Path) -> None:
    build_app(engine)
    one = tree_bytes(engine.images.export(APP, tmp_path / "one"))
    two = tree_bytes(engine.images.export(APP, tmp_path / "two"))
    assert one == two
    a = engine.images.export(APP, tmp_path / "a.tar", format="oci-archive")
    b = engine.images.export(APP, tmp_path / "b.tar", format="oci-archive")
    assert sha256_file(a) == sha256_file(b)
    # Another store, built from scratch (new mtimes everywhere): still the same digests.
    other = Engine(root=tmp_path / "other-root")
    build_app(other)
    assert tree_bytes(other.images.export(APP, tmp_path / "three")) == one


def test_export_into_existing_layout_adds_the_image(engine: Engine, busybox: str, tmp_path: Path) -> None:
    build_app(engine)
    layout = engine.images.export(APP, tmp_path / "layout")
    engine.images.export(busybox, layout)
    names = sorted(
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads((layout / "index.json").read_text())["manifests"]
    )
    assert names == [APP, busybox]
    other = Engine(root=tmp_path / "other-root")
    with pytest.raises(StorageError, match="pass name="):
        other.images.import_(layout)
    assert other.images.import_(layout, name=busybox).tags == (busybox,)
    with pytest.raises(StorageError, match="not an empty directory"):
        engine.images.export(APP, tmp_path / "layout" / "index.json")


# ---------------------------------------------------------------------------
# OCI and docker import of what podman made
# ---------------------------------------------------------------------------

CONTAINERFILE = """\
FROM localhost/pxtest/base:1
RUN rm /etc/victim && echo added > /etc/added
ENV GREETING=podman
WORKDIR /etc
LABEL org.example.by=podman
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo built-by-podman; cat /etc/added"]
"""


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_import_podman_image(engine: Engine, podman: Podman, tmp_path: Path, fmt: str) -> None:
    root_tar = busybox_root_tar(tmp_path / "root.tar")
    podman("import", str(root_tar), "localhost/pxtest/base:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    podman("build", *RUN_OPTIONS, "-t", "localhost/pxtest/app:1", "-f", str(ctx / "Containerfile"), str(ctx))
    assert podman.run("localhost/pxtest/app:1").stdout == "built-by-podman\nadded\n"
    archive = tmp_path / f"app.{fmt}.tar"
    podman("save", "--format", fmt, "-o", str(archive), "localhost/pxtest/app:1")

    # A corrupt copy first: a flipped byte in the biggest layer. Nothing may stay.
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(unpacked)], check=True)
    biggest = max(
        (p for p in unpacked.rglob("*") if p.is_file() and not p.is_symlink()), key=lambda p: p.stat().st_size
    )
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="corrupt|not a valid layer"):
        engine.images.import_(unpacked)
    store_is_empty(engine)

    image = engine.images.import_(archive)
    assert image.tags == ("localhost/pxtest/app:1",)
    # Entrypoint and Cmd stay apart, with Docker's meaning.
    assert image.config.entrypoint == ("/bin/sh", "-c")
    assert image.config.cmd == ("echo built-by-podman; cat /etc/added",)
    assert image.config.env == {"GREETING": "podman"} and image.config.workdir == "/etc"
    assert image.config.labels["org.example.by"] == "podman"
    assert engine.containers.run(image.tags[0], remove=True).stdout == b"built-by-podman\nadded\n"
    # The arguments replace Cmd and go to the entrypoint (/bin/sh -c), as with podman run.
    out = engine.containers.run(
        image.tags[0], ["test ! -e /etc/victim && pwd && echo $GREETING"], remove=True
    )
    assert out.stdout == b"/etc\npodman\n"

    # Idempotent: the same layers, the same image.
    layers = sorted(engine.store.layer_keys())
    assert engine.images.import_(archive).id == image.id
    assert sorted(engine.store.layer_keys()) == layers

    # A base for new layers.
    engine.images.build(
        Image(
            "interop/ontop:1",
            base=f"image:{image.tags[0]}",
            layers=["echo more > /more"],
            cmd=["cat", "/more"],
        )
    )
    assert engine.containers.run("interop/ontop:1", ["cat", "/more", "/etc/added"], remove=True).stdout == (
        b"more\nadded\n"
    )


def test_round_trip_keeps_the_image(engine: Engine, tmp_path: Path) -> None:
    """pylxcore -> OCI -> another pylxcore store: same config, same output, limits kept."""
    from pylxcore import Limits

    engine.images.build(
        Image(
            "interop/limited:1",
            base="busybox",
            layers=["echo x > /x"],
            cmd=["cat", "/x"],
            user="nobody",
            limits=Limits(memory="64M", pids=32),
        )
    )
    archive = engine.images.export("interop/limited:1", tmp_path / "l.tar", format="oci-archive")
    other = Engine(root=tmp_path / "other-root")
    image = other.images.import_(archive, name="copied/limited:2")
    original = engine.images.get("interop/limited:1")
    assert image.tags == ("copied/limited:2",)
    assert image.config == original.config
    assert other.containers.run("copied/limited:2", remove=True).stdout == b"x\n"
    # The user maps to numeric ids in LXC's config.
    lxc = engine.images.export("interop/limited:1", tmp_path / "lxc", format="lxc")
    with tarfile.open(lxc / "meta.tar.xz") as tar:
        config = (tar.extractfile("config") or io.BytesIO()).read().decode()
    assert "lxc.init.uid = 65534\nlxc.init.gid = 65534\n" in config
    assert "lxc.execute.cmd = cat /x\n" in config


def test_import_docker25_style_layout(engine: Engine, tmp_path: Path) -> None:
    """Docker 25+ ``docker save``: an OCI layout whose index points at a multi-platform
    index (with an attestation entry), named by containerd's annotation, plus manifest.json."""
    build_app(engine)
    layout = engine.images.export(APP, tmp_path / "layout")
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    del entry["annotations"]
    other_platform = {
        **entry,
        "digest": "sha256:" + "0" * 64,
        "platform": {"architecture": "s390x", "os": "linux"},
    }
    attestation = {
        **entry,
        "digest": "sha256:" + "1" * 64,
        "platform": {"architecture": "unknown", "os": "unknown"},
    }
    nested = json.dumps({"schemaVersion": 2, "manifests": [other_platform, entry, attestation]}).encode()
    nested_digest = hashlib.sha256(nested).hexdigest()
    (layout / "blobs" / "sha256" / nested_digest).write_bytes(nested)
    top = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": f"sha256:{nested_digest}",
        "size": len(nested),
        "annotations": {
            "io.containerd.image.name": "docker.io/library/app:1",
            "org.opencontainers.image.ref.name": "1",
        },
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (layout / "manifest.json").write_text(
        json.dumps([{"Config": "unused", "RepoTags": ["app:1"], "Layers": []}])
    )
    archive = tmp_path / "docker25.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    image = engine.images.import_(archive)
    assert image.tags == ("docker.io/library/app:1",)
    assert image.config == engine.images.get(APP).config
    assert engine.containers.run("docker.io/library/app:1", remove=True).stdout == APP_OUTPUT


# ---------------------------------------------------------------------------
# Hand-made layouts: whiteouts, corruption, path tricks
# ---------------------------------------------------------------------------


def member(name: str, kind: str = "file", data: bytes = b"", link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o755 if kind == "dir" else 0o644
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "sym": tarfile.SYMTYPE,
        "hard": tarfile.LNKTYPE,
    }[kind]
    info.linkname = link
    info.size = len(data) if kind == "file" else 0
    return info, data


def make_layout(
    dest: Path, layers: list[list[tuple[tarfile.TarInfo, bytes]]], ref: str = "crafted:1"
) -> Path:
    """An OCI layout written by hand (not by the code under test)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    descs, diff_ids = [], []
    for members in layers:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        diff_ids.append("sha256:" + hashlib.sha256(buf.getvalue()).hexdigest())
        descs.append(blob(gzip.compress(buf.getvalue()), "application/vnd.oci.image.layer.v1.tar+gzip"))
    config = {
        "architecture": host_platform()[0],
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "config": config_desc, "layers": descs}
    manifest_desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


GOOD_LAYER = [member("etc", "dir"), member("etc/hello", data=b"hi\n")]


def test_import_converts_whiteouts_and_opaque_dirs(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(
        tmp_path / "layout",
        [
            [
                member("d", "dir"),
                member("d/a", data=b"a"),
                member("d/b", data=b"b"),
                member("o", "dir"),
                member("o/old", data=b"old"),
            ],
            [
                member("d", "dir"),
                member("d/.wh.a"),
                member("o", "dir"),
                member("o/.wh..wh..opq"),
                member("o/new", data=b"new"),
            ],
        ],
    )
    image = engine.images.import_(layout)
    assert image.tags == ("crafted:1",)
    top = engine.store.layer_dir(image.layer_keys[1]) / "fs"
    st = os.lstat(top / "d" / "a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "a .wh. file becomes an overlayfs whiteout"
    assert os.getxattr(top / "o", "trusted.overlay.opaque") == b"y"
    assert not (top / "o" / ".wh..wh..opq").exists()

    flat = engine.images.export("crafted:1", tmp_path / "flat.tar", format="rootfs")
    with tarfile.open(flat) as tar:
        assert sorted(tar.getnames()) == ["d", "d/b", "o", "o/new"]
    again = engine.images.export("crafted:1", tmp_path / "again")
    manifest_digest = json.loads((again / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((again / "blobs" / "sha256" / manifest_digest[7:]).read_text())
    with tarfile.open(again / "blobs" / "sha256" / manifest["layers"][1]["digest"][7:]) as tar:
        assert sorted(tar.getnames()) == ["d", "d/.wh.a", "o", "o/.wh..wh..opq", "o/new"]


@pytest.mark.parametrize(
    "bad",
    [
        [member("../evil", data=b"x")],
        [member("/abs-evil", data=b"x")],
        [member("etc/../../evil", data=b"x")],
        [member("h", "hard", link="../../evil")],
        [member("h", "hard", link="/etc/passwd")],
        [member("s", "sym", link="../../../../evil")],
        [member("out", "sym", link="/"), member("out/evil", data=b"x")],
        [member("etc/.wh.", data=b"")],
    ],
    ids=[
        "dotdot",
        "absolute",
        "inner-dotdot",
        "hardlink-dotdot",
        "hardlink-absolute",
        "symlink-escape",
        "through-symlink",
        "bad-whiteout",
    ],
)
def test_import_refuses_path_tricks(
    engine: Engine, tmp_path: Path, bad: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    layout = make_layout(tmp_path / "x" / "y" / "layout", [GOOD_LAYER, bad])
    with pytest.raises(StorageError):
        engine.images.import_(layout)
    store_is_empty(engine)
    assert not list(tmp_path.rglob("evil")) and not (Path("/evil")).exists()


def test_corrupt_blobs_leave_nothing(engine: Engine, tmp_path: Path) -> None:
    build_app(engine)
    layout = engine.images.export(APP, tmp_path / "layout")
    fresh = Engine(root=tmp_path / "fresh-root")
    manifest_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest[7:]).read_text())

    def tampered(edit: Any, digest: str) -> Path:
        copy = tmp_path / f"copy-{secrets.token_hex(4)}"
        shutil.copytree(layout, copy)
        blob = copy / "blobs" / "sha256" / digest[7:]
        blob.write_bytes(edit(blob.read_bytes()))
        return copy

    def flip(data: bytes) -> bytes:
        mid = len(data) // 2
        return data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1 :]

    for copy in (
        tampered(flip, manifest["layers"][0]["digest"]),  # the big base layer
        tampered(lambda d: d[:-10], manifest["layers"][2]["digest"]),  # truncated top layer
        tampered(lambda d: d.replace(b"pylxcore", b"PYLXCORE"), manifest["config"]["digest"]),
        tampered(lambda d: d.replace(b"sha256", b"sha257", 1), manifest_digest),
    ):
        with pytest.raises(StorageError):
            fresh.images.import_(copy)
        store_is_empty(fresh)
    assert fresh.images.import_(layout).tags == (APP,)


def test_import_name_and_input_errors(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout", [GOOD_LAYER], ref="Not A Valid:Ref:x")
    with pytest.raises(SpecError, match="pass name="):
        engine.images.import_(layout)
    with pytest.raises(SpecError):
        engine.images.import_(layout, name="../escape")
    assert engine.images.import_(layout, name="fixed/name").tags == ("fixed/name:latest",)
    with pytest.raises(StorageError, match="does not exist"):
        engine.images.import_(tmp_path / "missing")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(StorageError):
        engine.images.import_(tmp_path / "junk.tar")
    with pytest.raises(StorageError, match="neither"):
        engine.images.import_(tmp_path / "layout" / "blobs")
    with pytest.raises(SpecError, match="unknown export format"):
        engine.images.export("fixed/name", tmp_path / "x", format="qcow2")


# ---------------------------------------------------------------------------
# LXC, Incus and rootfs exports
# ---------------------------------------------------------------------------


def test_lxc_export_is_created_and_run_by_lxc_tools(engine: Engine, tmp_path: Path) -> None:
    need_tools("lxc-create", "lxc-execute", "lxc-destroy", "xz")
    build_app(engine)
    out = engine.images.export(APP, tmp_path / "lxc-image", format="lxc")
    assert sorted(p.name for p in out.iterdir()) == ["meta.tar.xz", "rootfs.tar.xz"]
    with tarfile.open(out / "meta.tar.xz") as tar:
        config = (tar.extractfile("config") or io.BytesIO()).read().decode()
    assert f"lxc.arch = {lxc_arch()}" in config

    lxcpath = tmp_path / "lxcpath"
    lxcpath.mkdir()
    name = "pxtest-" + secrets.token_hex(4)
    net = tmp_path / "net.conf"
    net.write_text("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")
    base = ["-P", str(lxcpath), "-n", name]
    create = subprocess.run(
        [
            "lxc-create",
            *base,
            "-f",
            str(net),
            "-t",
            "local",
            "--",
            "-m",
            str(out / "meta.tar.xz"),
            "-f",
            str(out / "rootfs.tar.xz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        assert create.returncode == 0, create.stdout + create.stderr
        rootfs = lxcpath / name / "rootfs"
        assert (rootfs / "data" / "keep").exists() and not (rootfs / "data" / "gone").exists()
        assert not (rootfs / "opq" / "old").exists() and (rootfs / "opq" / "new").exists()
        assert (rootfs / "etc" / "hostname").read_text() == f"{name}\n"
        # No command given: lxc-execute runs the image's cmd (lxc.execute.cmd), env and workdir included.
        run = subprocess.run(["lxc-execute", *base], capture_output=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout == APP_OUTPUT
        pwd = subprocess.run(
            ["lxc-execute", *base, "--", "pwd"], capture_output=True, timeout=120, check=False
        )
        assert pwd.stdout == b"/data\n"
    finally:
        subprocess.run(["lxc-destroy", *base], capture_output=True, timeout=120, check=False)
    assert not (lxcpath / name).exists()


def test_incus_export_layout(engine: Engine, tmp_path: Path) -> None:
    build_app(engine)
    path = engine.images.export(APP, tmp_path / "app.incus.tar.xz", format="incus")
    with tarfile.open(path) as tar:
        names = tar.getnames()
        metadata = yaml.safe_load(tar.extractfile("metadata.yaml") or io.BytesIO())
        template = (tar.extractfile("templates/hostname.tpl") or io.BytesIO()).read()
        rootfs_members = {m.name: m for m in tar.getmembers() if m.name.startswith("rootfs/")}
    assert names[0] == "metadata.yaml"
    assert {n.split("/")[0] for n in names} == {"metadata.yaml", "templates", "rootfs"}
    assert metadata["architecture"] == lxc_arch()
    assert isinstance(metadata["creation_date"], int) and metadata["creation_date"] > 0
    assert metadata["properties"]["name"] == APP and metadata["properties"]["description"]
    assert metadata["templates"]["/etc/hostname"]["template"] == "hostname.tpl"
    assert b"container.name" in template
    assert "rootfs/bin/busybox" in rootfs_members and "rootfs/data/keep" in rootfs_members
    assert "rootfs/data/gone" not in rootfs_members and "rootfs/opq/old" not in rootfs_members
    assert not any("/.wh." in n for n in rootfs_members)
    assert rootfs_members["rootfs/bin/sh"].issym()


def test_rootfs_export_is_a_base_again(engine: Engine, tmp_path: Path) -> None:
    build_app(engine)
    flat = engine.images.export(APP, tmp_path / "app-rootfs.tar.gz", format="rootfs")
    with gzip.open(flat) as fh:
        fh.read(1)  # the suffix chose gzip
    engine.images.build(
        Image(
            "interop/flat:1",
            base=f"tar:{flat}",
            workdir="/data",
            cmd=["sh", "-c", "echo hello from pylxcore; ls /data /opq"],
        )
    )
    assert engine.containers.run("interop/flat:1", remove=True).stdout == APP_OUTPUT


def test_docs_example_runs(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Python example of docs/interop.md, verbatim, prints what the page says."""
    text = (Path(__file__).parent.parent / "docs" / "interop.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    expected = text.split("prints\n\n```\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("PYLXCORE_ROOT", str(engine.root))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/interop.md", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out == expected
    exports = tmp_path / "exports"
    assert sorted(p.name for p in exports.iterdir()) == [
        "app.incus.tar.xz", "app.oci.tar", "lxc", "oci", "rootfs.tar.gz"
    ]  # fmt: skip
