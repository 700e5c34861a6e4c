"""A build context that changes under the builder never leaks host files into a layer.

The user who owns a build context can change it while a build reads it. A
copy must never read through a symlink it did not see as one (no
check-then-open on a path), must copy symlinks as symlinks, and must not
commit anything other than what its cache key was computed from.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import stat
from pathlib import Path
from typing import Any, Callable

import pytest

from pylxcore import BuildError, Engine, Image, Layer, PylxcoreError, SpecError
from pylxcore.build import builder as build_mod
from pylxcore.store import rmtree

MARKER = b"HOST-SECRET-" + os.urandom(8).hex().encode()

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2 = _libc.renameat2  # looked up once, before any fork


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE): neither is ever missing."""
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


def host_secrets(tmp_path: Path) -> tuple[Path, Path]:
    """A 0600 file and a 0700 dir outside the context, both holding MARKER."""
    secret = tmp_path / "secret"
    secret.write_bytes(MARKER)
    secret.chmod(0o600)
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir(mode=0o700)
    (hostdir / "x").write_bytes(MARKER)
    return secret, hostdir


def leaks(root: Path) -> list[str]:
    """Regular files under ``root`` (symlinks not followed) whose bytes hold MARKER."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(p).st_mode):
                with open(p, "rb") as fh:
                    if MARKER in fh.read():
                        found.append(p)
    return found


@pytest.fixture
def staged_leaks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Leaks in every staging dir the builder discards (a failed copy too)."""
    found: list[str] = []

    def scanning(path: Path) -> None:
        found.extend(leaks(path))
        rmtree(path)

    monkeypatch.setattr(build_mod, "rmtree", scanning)
    return found


def all_layers_leaks(engine: Engine) -> list[str]:
    return [p for key in engine.store.layer_keys() for p in leaks(engine.store.layer_dir(key))]


# -- the race ------------------------------------------------------------------------


@pytest.mark.slow
def test_racing_the_context_never_copies_a_host_file(
    engine: Engine, tmp_path: Path, staged_leaks: list[str]
) -> None:
    secret, hostdir = host_secrets(tmp_path)
    ctx = tmp_path / "ctx"
    tree, swap = ctx / "tree", ctx / "swap"
    tree.mkdir(parents=True)
    swap.mkdir()
    pairs: list[tuple[Path, Path]] = []
    for i in range(40):
        (tree / f"f{i:02}").write_bytes(b"ok %d\n" % i)
        os.symlink(secret, swap / f"f{i:02}")
        pairs.append((tree / f"f{i:02}", swap / f"f{i:02}"))
    for i in range(4):
        (tree / f"d{i}").mkdir()
        (tree / f"d{i}" / "x").write_bytes(b"inside\n")
        (tree / f"d{i}" / f"only-in-ctx-{i}").write_bytes(b"inside\n")
        os.symlink(hostdir, swap / f"d{i}")
        pairs.append((tree / f"d{i}", swap / f"d{i}"))
    engine.images.build(Image("race/base:1", base="busybox"))
    image = Image("race/img:1", base="image:race/base:1", layers=[Layer.copy("tree/", "/tree/")])

    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the attacker: flip every context entry to a symlink to a host secret and back
        try:
            while os.getppid() == parent:
                for a, b in pairs:
                    exchange(a, b)
                    exchange(a, b)
        finally:
            os._exit(0)
    built, refused, leaked = 0, 0, []
    try:
        for _ in range(80):
            try:
                result = engine.images.build(image, context=ctx, no_cache=True)
            except PylxcoreError:  # "changed while it was read": a typed refusal is fine
                refused += 1
                continue
            built += 1
            leaked += leaks(engine.store.layer_dir(result.layer_keys[-1]))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"race: {built} built, {refused} refused, leaked {len(leaked)} + {len(staged_leaks)} staged")
    assert leaked == [] and staged_leaks == [], f"host secret copied: {leaked + staged_leaks}"
    assert all_layers_leaks(engine) == []
    assert sorted(os.listdir(hostdir)) == ["x"], "the copy wrote through a symlink into the host"
    assert secret.read_bytes() == MARKER


# -- deterministic: the context changes at the worst moment -------------------------------


def swap_before_open(
    monkeypatch: pytest.MonkeyPatch, name: str, nth: int, change: Callable[[], object]
) -> list[int]:
    """Run ``change`` just before the ``nth`` (1-based) relative open of ``name``:
    after whatever the builder checked, before it opens. Returns [opens seen]."""
    seen = [0]
    real = os.open

    def opening(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None and path == name:
            seen[0] += 1
            if seen[0] == nth:
                change()
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", opening)
    return seen


@pytest.mark.parametrize("nth", [1, 2], ids=["while-hashing", "while-copying"])
@pytest.mark.parametrize("what", ["file", "subdir"])
def test_an_entry_swapped_for_a_symlink_is_never_read_through(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    staged_leaks: list[str],
    nth: int,
    what: str,
) -> None:
    secret, hostdir = host_secrets(tmp_path)
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "sub" / "x").write_bytes(b"inside\n")
    (ctx / "tree" / "sub" / "mine").write_bytes(b"inside\n")
    (ctx / "tree" / "file").write_bytes(b"inside\n")
    os.symlink(hostdir if what == "subdir" else secret, ctx / "link")
    name = "sub" if what == "subdir" else "file"
    engine.images.build(Image("swap/base:1", base="busybox"))
    seen = swap_before_open(monkeypatch, name, nth, lambda: exchange(ctx / "tree" / name, ctx / "link"))
    image = Image("swap/img:1", base="image:swap/base:1", layers=[Layer.copy("tree/", "/tree/")])
    with pytest.raises(SpecError) as info:
        engine.images.build(image, context=ctx)
    assert seen[0] == nth
    assert "changed while" in str(info.value) and "layers[0].copy.src" in str(info.value)
    assert staged_leaks == [] and all_layers_leaks(engine) == []
    assert sorted(os.listdir(hostdir)) == ["x"]
    assert list(engine.store.tmp_dir.iterdir()) == []


def test_a_file_rewritten_between_hashing_and_copying_is_not_committed(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "tree").mkdir(parents=True)
    (ctx / "tree" / "file").write_bytes(b"hashed\n")
    engine.images.build(Image("rw/base:1", base="busybox"))
    layers_before = set(engine.store.layer_keys())
    swap_before_open(monkeypatch, "file", 2, lambda: (ctx / "tree" / "file").write_bytes(b"copied\n"))
    image = Image("rw/img:1", base="image:rw/base:1", layers=[Layer.copy("tree/", "/tree/")])
    with pytest.raises(BuildError) as info:
        engine.images.build(image, context=ctx)
    assert info.value.layer_index == 0 and "changed while" in str(info.value)
    assert set(engine.store.layer_keys()) == layers_before, "a layer whose key does not match its files"
    assert list(engine.store.tmp_dir.iterdir()) == []
    monkeypatch.undo()
    built = engine.images.build(image, context=ctx)  # unchanged now: builds
    assert (engine.store.layer_dir(built.layer_keys[-1]) / "fs" / "tree" / "file").read_bytes() == b"copied\n"


# -- symlinks and special files in the context --------------------------------------------


def test_symlinks_in_the_context_are_copied_as_symlinks(engine: Engine, tmp_path: Path) -> None:
    secret, hostdir = host_secrets(tmp_path)
    site = tmp_path / "ctx" / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_bytes(b"page\n")
    os.symlink("index.html", site / "inside")
    os.symlink("../../secret", site / "relative-out")
    os.symlink(secret, site / "absolute-out")
    os.symlink(hostdir, site / "sub" / "dir-out")
    built = engine.images.build(
        Image("links/img:1", layers=[Layer.copy("site/", "/www/")]), context=tmp_path / "ctx"
    )
    www = engine.store.layer_dir(built.layer_keys[-1]) / "fs" / "www"
    assert os.readlink(www / "inside") == "index.html"
    assert os.readlink(www / "relative-out") == "../../secret"
    assert os.readlink(www / "absolute-out") == str(secret)
    assert os.readlink(www / "sub" / "dir-out") == str(hostdir)
    assert all(os.lstat(www / n).st_uid == 0 for n in ("inside", "absolute-out"))
    assert all_layers_leaks(engine) == []
    # Inside the container the links resolve in the image, not on the host.
    out = engine.containers.run("links/img:1", ["cat", "/www/inside"], remove=True)
    assert out.stdout == b"page\n"


def test_a_dir_copy_into_a_link_to_the_host_stays_in_the_image(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "sub" / "f").write_bytes(b"inside\n")
    outside = tmp_path / "host-target"
    outside.mkdir()
    engine.images.build(
        Image(
            "dest/img:1",
            layers=[
                f"ln -s {outside} /abs && ln -s / /root-link",
                Layer.copy("tree/", "/abs/"),
                Layer.copy("tree/", "/root-link/etc/planted-dir/"),
            ],
        ),
        context=ctx,
    )
    assert os.listdir(outside) == []
    assert not Path("/etc/planted-dir").exists()
    out = engine.containers.run(
        "dest/img:1", ["cat", f"{outside}/sub/f", "/etc/planted-dir/sub/f"], remove=True
    )
    assert out.stdout == b"inside\ninside\n"


@pytest.fixture
def no_hang() -> Any:
    """Fail instead of hanging (a fifo opened for reading blocks without O_NONBLOCK)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError("the build blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kind", ["fifo", "socket"])
@pytest.mark.parametrize("src", ["tree/", "tree/special"])
def test_special_files_are_refused_without_blocking(
    engine: Engine, tmp_path: Path, no_hang: None, kind: str, src: str
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "tree").mkdir(parents=True)
    (ctx / "tree" / "a").write_bytes(b"a\n")
    special = ctx / "tree" / "special"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(special))
        sock.close()
    with pytest.raises(SpecError) as info:
        engine.images.build(Image("special/img:1", layers=[Layer.copy(src, "/x/")]), context=ctx)
    assert "is not a regular file, directory or symlink" in str(info.value)
    assert str(special) in str(info.value)
    assert list(engine.store.tmp_dir.iterdir()) == []
