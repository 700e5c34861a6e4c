"""Image configs kept whole (SPEC.md section 8): Entrypoint and Cmd with Docker's
meaning, ExposedPorts, Volumes, StopSignal, Healthcheck, history; a numeric
user without a passwd entry; foreign layers that keep their digests through
import and export; docker-archive export; save and load through pipes.

The foreign image is written by hand here (not by the code under test), and
podman and Docker 20.10 say what running it means.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pylxcore import Engine, Healthcheck, Image, SpecError
from pylxcore.runtime.programs import command_argv
from pylxcore.runtime.rootfs import LayerStack
from pylxcore.runtime.users import lookup_user
from pylxcore.transfer.imageconfig import host_platform, record_config
from pylxcore.transfer.pgzip import CHUNK, ParallelGzipWriter
from tests.conftest import require_docker
from tests.peers import dockerd
from tests.test_interop import RUN_OPTIONS, Podman, busybox_root_tar, podman  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parent.parent
MEDIA_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
FOREIGN = "foreign/app:1"
# What a Dockerfile would say; the config below is what Docker writes for it.
CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP=hello"],
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["echo $APP"],
    "WorkingDir": "/tmp",
    "User": "1234",
    "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    "Volumes": {"/data": {}},
    "StopSignal": "SIGQUIT",
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000, "Retries": 3},
    "Labels": {"org.example.by": "hand"},
}
HISTORY = [
    {"created": "2024-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) ADD file:root.tar in /"},
    {"created": "2024-01-02T03:04:06Z", "created_by": "/bin/sh -c #(nop)  ENV APP=hello",
     "empty_layer": True},
    {"created": "2024-01-02T03:04:07Z", "created_by": "/bin/sh -c echo two > /two", "comment": "kept"},
]


# ---------------------------------------------------------------------------
# Pure: the spec, the config mapping, the command line rule, the user rule
# ---------------------------------------------------------------------------


def test_image_keeps_the_whole_config_in_yaml() -> None:
    image = Image(
        "web:1",
        entrypoint=["/bin/sh", "-c"],
        cmd=["echo $APP"],
        exposed_ports=[8080, "53/udp", "8080/tcp"],
        volumes=["/data", "/data", "/logs"],
        stop_signal="SIGQUIT",
        healthcheck={"test": "wget -q -O- localhost", "interval": "1m30s", "retries": 3},
    )
    assert image.exposed_ports == ("53/udp", "8080/tcp")
    assert image.volumes == ("/data", "/logs")
    assert image.healthcheck == Healthcheck(("CMD-SHELL", "wget -q -O- localhost"), interval=90, retries=3)
    assert Image.from_yaml(image.to_yaml()) == image
    assert Image("web:1", healthcheck=["curl", "-f", "x"]).healthcheck.test == ("CMD", "curl", "-f", "x")
    bad = [
        ({"exposed_ports": ["80-90"]}, "exposed_ports[0]"),
        ({"exposed_ports": [70000]}, "exposed_ports[0]"),
        ({"volumes": ["data"]}, "volumes[0]"),
        ({"stop_signal": "SIG TERM"}, "stop_signal"),
        ({"entrypoint": []}, "entrypoint"),
        ({"healthcheck": {"test": "x", "interval": "soon"}}, "healthcheck.interval"),
        ({"healthcheck": {"test": ["CMD-SHELL", "a", "b"]}}, "healthcheck.test"),
        ({"healthcheck": {"interval": 5}}, "healthcheck.test"),
    ]
    for kwargs, key in bad:
        with pytest.raises(SpecError) as info:
            Image("web:1", **kwargs)
        assert info.value.key == key, kwargs
    with pytest.raises(SpecError) as info:
        Image.from_yaml("name: a\nhealthcheck:\n  test: true\n  every: 5s\n", path="i.yaml")
    assert (info.value.key, info.value.line) == ("healthcheck.every", 4)


def test_record_config_keeps_docker_fields_apart() -> None:
    cfg = record_config({"config": CONFIG}, None)
    assert cfg["entrypoint"] == ["/bin/sh", "-c"] and cfg["cmd"] == ["echo $APP"]
    assert cfg["exposed_ports"] == ["53/udp", "80/tcp"] and cfg["volumes"] == ["/data"]
    assert cfg["stop_signal"] == "SIGQUIT" and cfg["user"] == "1234" and cfg["workdir"] == "/tmp"
    assert cfg["healthcheck"] == {"test": ["CMD-SHELL", "true"], "interval": 30.0, "retries": 3}
    assert cfg["env"] == {"APP": "hello"} and cfg["labels"] == {"org.example.by": "hand"}
    with pytest.raises(SpecError) as info:
        record_config({"config": {"Healthcheck": {"Test": ["CMD"]}}}, None)
    assert info.value.key == "config.Healthcheck.test"
    with pytest.raises(SpecError) as info:
        record_config({"config": {"ExposedPorts": ["80/tcp"]}}, None)
    assert info.value.key == "config.ExposedPorts"


def test_command_line_is_entrypoint_then_args_or_cmd() -> None:
    image = {"entrypoint": ["/bin/sh", "-c"], "cmd": ["echo $APP"]}
    assert command_argv(None, image) == ["/bin/sh", "-c", "echo $APP"]
    assert command_argv(["echo x"], image) == ["/bin/sh", "-c", "echo x"]
    # entrypoint= replaces the image's and drops its cmd, as docker run --entrypoint does.
    assert command_argv(None, image, entrypoint="/bin/true") == ["/bin/true"]
    assert command_argv(["a", "b"], image, entrypoint=["env", "-i"]) == ["env", "-i", "a", "b"]
    assert command_argv(["id"], image, entrypoint="") == ["id"]
    with pytest.raises(SpecError, match="entrypoint= replaced"):
        command_argv(None, image, entrypoint=[])
    with pytest.raises(SpecError, match="no command given and the image has no cmd"):
        command_argv(None, {})
    with pytest.raises(SpecError) as info:
        command_argv(None, image, entrypoint=["a\0b"])
    assert info.value.key == "entrypoint[0]"


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12345])
def test_parallel_gzip_is_one_standard_reproducible_member(size: int) -> None:
    data = (os.urandom(size // 2) + b"".join(b"%d\n" % i for i in range(size)))[:size]
    blobs = []
    for _ in range(2):
        out = io.BytesIO()
        with ParallelGzipWriter(out, threads=3) as gz:
            for i in range(0, size, 100_000):
                gz.write(data[i : i + 100_000])
        blobs.append(out.getvalue())
    assert blobs[0] == blobs[1]
    assert gzip.decompress(blobs[0]) == data
    # Another reader: GNU gzip, which checks the CRC and the length too.
    proc = subprocess.run(["gzip", "-dc"], input=blobs[0], capture_output=True, check=True)
    assert proc.stdout == data
    assert blobs[0][:4] == b"\x1f\x8b\x08\x00" and blobs[0][4:8] == b"\0\0\0\0"  # no name, time 0


def test_numeric_user_without_an_entry_is_in_group_0(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    stack = LayerStack([tmp_path])
    assert lookup_user(stack, "1234") == (1234, 0)  # no entry: group 0, as Docker and podman
    assert lookup_user(stack, "1000") == (1000, 1001)  # an entry: its group
    assert lookup_user(stack, "1234:staff") == (1234, 50)


# ---------------------------------------------------------------------------
# A foreign image, written by hand
# ---------------------------------------------------------------------------


def _blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def foreign_archive(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """An oci-archive as another tool writes it: (path, layer blob digests, diff_ids).

    Two gzip layers (a busybox root, then a file), gzip at level 9 with a
    name in its header: bytes pylxcore's own export would never write."""
    base = busybox_root_tar(tmp_path / "root.tar").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("two")
        info.size, info.mtime, info.uname = 4, 1_700_000_000, "someone"
        tar.addfile(info, io.BytesIO(b"two\n"))
    layout = tmp_path / "foreign"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descs, diff_ids = [], []
    for n, plain in enumerate((base, buf.getvalue())):
        gz = io.BytesIO()
        with gzip.GzipFile(filename=f"layer{n}", mode="wb", fileobj=gz, compresslevel=9, mtime=1234) as f:
            f.write(plain)
        descs.append({"mediaType": MEDIA_GZIP, **_blob(blobs, gz.getvalue())})
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
    config = {
        "created": "2024-01-02T03:04:07Z",
        "author": "a hand",
        "architecture": host_platform()[0],
        "os": "linux",
        "config": CONFIG,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": HISTORY,
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(blobs, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": descs}
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             **_blob(blobs, json.dumps(manifest).encode()),
             "annotations": {"org.opencontainers.image.ref.name": FOREIGN}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    archive = tmp_path / "foreign.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    return archive, [d["digest"] for d in descs], diff_ids


def read_oci_archive(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, config) of the one image of an oci-archive."""
    with tarfile.open(path) as tar:
        def blob(digest: str) -> Any:
            fh = tar.extractfile(f"blobs/sha256/{digest[7:]}")
            assert fh is not None
            data = fh.read()
            assert hashlib.sha256(data).hexdigest() == digest[7:]
            return json.loads(data)

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = blob(index["manifests"][0]["digest"])
        return manifest, blob(manifest["config"]["digest"])


# The runs compared with the peers: (run's arguments, entrypoint override).
RUNS: list[tuple[list[str], str | None]] = [
    ([], None),  # entrypoint + the image's cmd
    (["echo override $APP; pwd"], None),  # arguments replace cmd
    # --entrypoint drops the image's cmd; user 1234 without a passwd entry is in group 0.
    (["-c", "busybox id -u; busybox id -g"], "/bin/sh"),
    (["one", "two"], "echo"),
]


def ours(engine: Engine, image: str) -> list[bytes]:
    out = []
    for args, entrypoint in RUNS:
        result = engine.containers.run(image, args or None, entrypoint=entrypoint, remove=True)
        assert result.exit_code == 0, result
        out.append(result.stdout)
    return out


def theirs(run: Any, image: str) -> list[bytes]:
    """The same runs by a peer's CLI (``run(*args)`` returns its stdout)."""
    out = []
    for args, entrypoint in RUNS:
        options = ["--entrypoint", entrypoint] if entrypoint is not None else []
        out.append(run(*options, image, *args))
    return out


@pytest.mark.slow
def test_foreign_image_round_trip_against_podman(
    engine: Engine, podman: Podman, tmp_path: Path  # noqa: F811  (the fixture imported above)
) -> None:
    archive, digests, diff_ids = foreign_archive(tmp_path)
    image = engine.images.import_(archive)
    config = image.config
    assert (config.entrypoint, config.cmd) == (("/bin/sh", "-c"), ("echo $APP",))
    assert config.exposed_ports == ("53/udp", "80/tcp") and config.volumes == ("/data",)
    assert config.stop_signal == "SIGQUIT" and config.user == "1234" and config.workdir == "/tmp"
    assert config.healthcheck == Healthcheck(("CMD-SHELL", "true"), interval=30, retries=3)

    podman("load", "-i", str(archive))

    def podman_run(*args: str) -> bytes:
        return podman("run", "--rm", *RUN_OPTIONS, *args).stdout.encode()

    expected = theirs(podman_run, FOREIGN)
    assert expected[0] == b"hello\n" and expected[1] == b"override hello\n/tmp\n"  # (podman's word)
    assert ours(engine, FOREIGN) == expected

    # Export gives back what came in: the same layer blobs, the config whole, the history.
    out = engine.images.export(FOREIGN, tmp_path / "again.tar", format="oci-archive")
    manifest, exported = read_oci_archive(out)
    assert [layer["digest"] for layer in manifest["layers"]] == digests
    assert exported["rootfs"]["diff_ids"] == diff_ids
    assert exported["history"] == HISTORY
    assert (exported["created"], exported["author"]) == ("2024-01-02T03:04:07Z", "a hand")
    for key, value in CONFIG.items():
        assert exported["config"][key] == value, key

    # An image built on it shares its base layers with the original.
    engine.images.build(Image("mine:1", base=f"image:{FOREIGN}", layers=["echo three > /three"]))
    mine = engine.images.export("mine:1", tmp_path / "mine.tar", format="oci-archive")
    manifest, _ = read_oci_archive(mine)
    assert [layer["digest"] for layer in manifest["layers"]][:2] == digests

    # Its docker-archive loads in podman and runs the same.
    podman("rmi", "--all", "--force")
    docker_tar = engine.images.export(FOREIGN, tmp_path / "app.docker.tar", format="docker-archive")
    podman("load", "-i", str(docker_tar))
    assert theirs(podman_run, FOREIGN) == expected


def run_cli(*args: str, stdin: Any = None, stdout: Any = subprocess.PIPE) -> Any:
    return subprocess.run([sys.executable, "-m", "pylxcore", *args], stdin=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, check=False, timeout=300, cwd=REPO)


def test_save_and_load_through_pipes(engine: Engine, tmp_path: Path) -> None:
    archive, digests, _ = foreign_archive(tmp_path)
    root = str(engine.store.root)
    other = str(tmp_path / "other-root")
    image = engine.images.import_(archive)
    engine.images.tag(FOREIGN, "aaa/first:1")  # alphabetically before the name load is given
    for fmt in ("oci-archive", "docker-archive"):
        saved = tmp_path / f"saved.{fmt}"
        with open(saved, "wb") as out:
            proc = run_cli("--root", root, "save", "--format", fmt, FOREIGN, stdout=out)
        assert proc.returncode == 0, proc.stderr
        with open(saved, "rb") as fh:
            proc = run_cli("--root", other, "load", "-t", "zzz/last:1", stdin=fh)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"Loaded image: zzz/last:1\n"
    loaded = Engine(root=other).images.get("zzz/last:1")
    assert loaded.config == image.config
    # The same archive from a file, and its own name.
    proc = run_cli("--root", root, "load", "-i", str(archive))
    assert proc.stdout == f"Loaded image: {FOREIGN}\n".encode()
    manifest, _ = read_oci_archive(tmp_path / "saved.oci-archive")
    assert [layer["digest"] for layer in manifest["layers"]] == digests


@pytest.mark.slow
def test_docker_archive_loads_and_runs_in_docker_20_10(engine: Engine, tmp_path: Path) -> None:
    """``pylxcore save --format docker-archive | docker load``, then the same runs."""
    require_docker()
    archive, _, diff_ids = foreign_archive(tmp_path)
    engine.images.import_(archive)
    with dockerd(tmp_path / "docker") as peer:
        save = subprocess.Popen([sys.executable, "-m", "pylxcore", "--root", str(engine.store.root), "save",
                                 "--format", "docker-archive", FOREIGN], stdout=subprocess.PIPE, cwd=REPO)
        load = subprocess.run([peer.docker, "load"], stdin=save.stdout, env=peer.env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert save.wait(timeout=300) == 0
        assert load.returncode == 0, load.stderr
        assert f"Loaded image: {FOREIGN}" in load.stdout

        def docker_run(*args: str) -> bytes:
            proc = peer.run("run", "--rm", "--network", "none", *args)
            return proc.stdout.encode()

        assert theirs(docker_run, FOREIGN) == ours(engine, FOREIGN)
        inspected = json.loads(peer.run("image", "inspect", FOREIGN).stdout)[0]
        assert inspected["RootFS"]["Layers"] == diff_ids
        for key in ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
                    "StopSignal", "Healthcheck", "Labels"):
            assert inspected["Config"][key] == CONFIG[key], key


PEAK_RSS = """
import resource, sys
from pylxcore import Engine
Engine(root=sys.argv[1]).images.export(sys.argv[2], sys.stdout.buffer, format=sys.argv[3])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


@pytest.mark.slow
def test_export_memory_does_not_grow_with_layer_size(engine: Engine, busybox: str) -> None:
    """A 64 MiB layer (incompressible) exports to a pipe in the memory a tiny image takes."""
    engine.images.build(Image("big:1", base=f"image:{busybox}",
                              layers=["head -c 67108864 /dev/urandom > /big"]))

    def peak_kib(image: str, fmt: str) -> int:
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(engine.store.root), image, fmt],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, timeout=300,
                              cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stderr.split()[-1])

    for fmt in ("oci-archive", "docker-archive"):
        small, big = peak_kib(busybox, fmt), peak_kib("big:1", fmt)
        # Bounded buffers (tar records, gzip chunks in flight on each core), never the layer itself.
        assert big - small < 32 * 1024, (fmt, small, big)


def test_rootfs_exports_compress_by_suffix(engine: Engine, busybox: str, tmp_path: Path) -> None:
    """.tar.xz through ``xz -T0``, .tar.zst through ``zstd -T0``: what the tools and a tar: base read."""
    engine.images.build(Image("flat:1", base=f"image:{busybox}", layers=["echo flat > /flat"]))
    for suffix, tool in ((".tar.xz", "xz"), (".tar.zst", "zstd")):
        out = engine.images.export("flat:1", tmp_path / f"rootfs{suffix}", format="rootfs")
        subprocess.run([tool, "-t", str(out)], check=True, capture_output=True)
        engine.images.build(Image(f"again{suffix.replace('.', '-')}:1", base=f"tar:{out}"))
        result = engine.containers.run(f"again{suffix.replace('.', '-')}:1", ["cat", "/flat"], remove=True)
        assert result.stdout == b"flat\n"
