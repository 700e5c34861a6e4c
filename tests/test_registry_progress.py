"""Pull and push progress (``progress=callable``, the CLI's live display on a
terminal only), against Debian's docker-registry started by the test on
127.0.0.1 and checked with skopeo; and the stream readers a pull goes through.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pty
import select
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from pylxcore import Engine, Image, StorageError, TransferEvent
from pylxcore.transfer.pgzip import ParallelGzipWriter
from pylxcore.transfer.unpack import LayerBlob, unpack_layer
from tests.registry import Registry, registry
from tests.test_registry import REPO, _own_credentials, raw_manifest  # noqa: F401  (a fixture)

BIG = 3_000_000  # bytes of random data in the top layer: several reads, several events


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Registry]:
    with registry(tmp_path / "registry") as reg:
        yield reg


def build_big(engine: Engine, name: str = "big:1") -> None:
    layers = [f"mkdir -p /srv && head -c {BIG} /dev/urandom > /srv/big"]
    engine.images.build(Image(name, base="busybox", layers=layers, cmd=["ls", "/srv"]))


def check_moved(events: list[TransferEvent], layers: list[dict[str, object]], action: str) -> None:
    """Each layer of the manifest started, counted up to its size, and ended, in order."""
    assert events[-1].kind == "done" and events[-1].seconds is not None
    moved = [e for e in events if e.kind == "layer"]
    assert [(e.digest, e.size) for e in moved] == [(d["digest"], d["size"]) for d in layers]
    assert [e.index for e in moved] == list(range(1, len(layers) + 1))
    for layer in moved:
        mine = [e for e in events if e.digest == layer.digest]
        assert [e.kind for e in mine][0] == "layer" and [e.kind for e in mine][-1] == "layer_done"
        counts = [e.done for e in mine if e.kind == "bytes"]
        assert counts == sorted(counts) and counts[-1] == layer.size
        assert all(e.action == action and e.total == len(layers) for e in mine)
    big = max(moved, key=lambda e: e.size or 0)
    assert len([e for e in events if e.kind == "bytes" and e.digest == big.digest]) >= 3


def test_pull_and_push_report_each_layer(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    build_big(engine)
    ref = f"{plain.host}/team/big:1"
    pushed: list[TransferEvent] = []
    engine.images.push("big:1", ref, progress=pushed.append)
    layers = raw_manifest(ref, "--tls-verify=false")["layers"]
    check_moved(pushed, layers, "push")

    again: list[TransferEvent] = []
    engine.images.push("big:1", ref, progress=again.append)
    assert [e.kind for e in again] == ["exists"] * len(layers) + ["done"]

    other = Engine(root=tmp_path / "other")
    try:
        pulled: list[TransferEvent] = []
        other.images.pull(ref, progress=pulled.append)
        check_moved(pulled, layers, "pull")
        repeat: list[TransferEvent] = []
        other.images.pull(ref, progress=repeat.append)
        assert [e.kind for e in repeat] == ["exists"] * len(layers) + ["done"]
        assert [e.digest for e in repeat[:-1]] == [d["digest"] for d in layers]
    finally:
        other.close()


def run_on_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``argv`` with its stderr on a pseudo-terminal; (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    return proc.wait(60), out, seen.decode(errors="replace")


def test_cli_shows_progress_on_a_terminal_only(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    build_big(engine)
    ref = f"{plain.host}/team/big:1"
    engine.images.push("big:1", ref)
    top = raw_manifest(ref, "--tls-verify=false")["layers"][-1]["digest"][7:19]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def pull(root: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "pylxcore", "--root", str(root), "pull", *extra, ref]

    code, out, term = run_on_terminal(pull(tmp_path / "a"), env)
    assert code == 0, term
    assert f"Pulled {ref}" in out
    assert top in term and "100%" in term and "B/s" in term, term  # the layer's bar: bytes, speed
    assert "\r" in term  # updated in place, not printed line after line
    code, _, term = run_on_terminal(pull(tmp_path / "a"), env)
    assert code == 0 and f"{top}" in term and "already in the store" in term, term

    # --quiet, or stderr not a terminal: no display.
    code, out, term = run_on_terminal(pull(tmp_path / "b", "-q"), env)
    assert code == 0 and "%" not in term and out.strip().startswith("sha256:"), term
    proc = subprocess.run(pull(tmp_path / "c"), capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr

    push = [sys.executable, "-m", "pylxcore", "--root", str(tmp_path / "a"), "push", ref, f"{ref}-copy"]
    code, out, term = run_on_terminal(push, env)
    assert code == 0 and "already in the registry" in term and f"Pushed {ref}-copy" in out, term


# ---------------------------------------------------------------------------
# The readers a pull goes through: gzip of several members, stored chunks
# ---------------------------------------------------------------------------


def layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("random", os.urandom(300_000)), ("text", b"line\n" * 100_000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("how", ["one member", "two members and padding", "parallel", "truncated"])
def test_layer_blobs_unpack_whatever_their_gzip(tmp_path: Path, how: str) -> None:
    tar = layer_tar()
    half = len(tar) // 2
    if how == "one member":
        blob = gzip.compress(tar)
    elif how == "two members and padding":  # as `cat a.gz b.gz` (and tar's NUL padding) make
        blob = gzip.compress(tar[:half]) + gzip.compress(tar[half:]) + b"\0" * 512
    elif how == "parallel":
        out = io.BytesIO()
        with ParallelGzipWriter(out, threads=2) as gz:
            gz.write(tar)
        blob = out.getvalue()
    else:
        blob = gzip.compress(tar)[:-100]
    layer = LayerBlob("blobs/sha256/x", sha256(tar), sha256(blob), len(blob))
    fs = tmp_path / "fs"
    fs.mkdir()
    if how == "truncated":
        with pytest.raises(StorageError, match="not a valid layer tar"):
            unpack_layer(io.BytesIO(blob), layer, fs)
        return
    kept = io.BytesIO()
    unpacked = unpack_layer(io.BytesIO(blob), layer, fs, keep=kept)
    assert unpacked.compressed and unpacked.digest == sha256(blob) and kept.getvalue() == blob
    assert (fs / "text").read_bytes() == b"line\n" * 100_000
    assert (fs / "random").stat().st_size == 300_000


def test_parallel_gzip_stores_what_does_not_compress() -> None:
    """Random chunks go out stored (as fast as a copy), text deflated; one
    standard member either way, the same bytes every time, read by GNU gzip."""
    noise = os.urandom(3 << 20)
    text = b"".join(b"%d\n" % i for i in range(600_000))
    data = noise[: 1 << 20] + text + noise[1 << 20 :]
    blobs = []
    for _ in range(2):
        out = io.BytesIO()
        with ParallelGzipWriter(out, threads=2) as gz:
            gz.write(data)
        blobs.append(out.getvalue())
    assert blobs[0] == blobs[1]
    proc = subprocess.run(["gzip", "-dc"], input=blobs[0], capture_output=True, check=True)
    assert proc.stdout == data
    # The noise costs its size and a little framing; the text shrinks as deflate -1 makes it.
    assert len(blobs[0]) < len(noise) * 1.001 + len(gzip.compress(text, 1)) * 1.05
