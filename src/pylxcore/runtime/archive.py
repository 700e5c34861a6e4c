"""A container's files as tar streams: ``get_archive``, ``put_archive``, ``export``.

The work is done by pylxcore.runtime.archivehelper, a process chrooted into
the container's root, so that no symlink of the container can lead a read
or a write out of it. A running (or paused) container's root is its init's
``/proc/PID/root``: its own mount namespace, bind mounts and all. A stopped
container's layers are mounted by the helper in a private mount namespace
(``unshare --mount``) that dies with it: read-only, with the writable layer
as the top lower layer, to read; read-write on the writable layer itself,
under the container's lock (no start meanwhile), to write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

from pylxcore.errors import InvalidState, NotFound, SpecError, StorageError
from pylxcore.runtime.rootfs import MOUNT_OPTIONS_MAX
from pylxcore.store import rmtree

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

HELPER = str(Path(__file__).with_name("archivehelper.py"))
CHUNK = 1 << 16
PIPE_SIZE = 1 << 20
_LIVE = ("running", "paused")
Writer = Callable[[BinaryIO], None]  # writes a tar into the stream it is given


def _shift(container: Container) -> tuple[int, int]:
    """How far a user-namespaced container's ids are from the host's (0, 0 otherwise)."""
    if not container._meta().userns:
        return 0, 0
    from pylxcore.runtime.userns import subordinate_ids

    ids = subordinate_ids()
    return ids[0], ids[2]


def _overlay_options(container: Container, *, write: bool) -> str:
    """The overlay mount options of a stopped container's tree. Raises
    InvalidState (a user-namespaced one: its layers read right only as its
    supervisor mounts them), StorageError (too many layers for one mount)."""
    meta = container._meta()
    if meta.userns:
        raise InvalidState(
            f"cannot reach the files of container {container.name!r} while it is stopped: it runs in a"
            " user namespace, whose layers only its running supervisor mounts; start it first",
            name=container.name,
            state=container.state.value,
            operation="copy files of",
        )
    store = container._collection._store
    lowers = [store.short_path(k) for k in reversed(meta.layers)]
    upper = container.dir / "upper"
    if write:
        work = container.dir / "work"
        work.mkdir(exist_ok=True)
        options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    else:
        # The writable layer as the top lower layer: a read-only view that
        # never claims it, so the container can start meanwhile.
        options = f"lowerdir={':'.join([str(upper), *lowers])}"
    if len(options) > MOUNT_OPTIONS_MAX:
        raise StorageError(
            f"container {container.name!r} has too many layers to mount at once", path=str(container.dir)
        )
    return options


@contextlib.contextmanager
def _helper(
    container: Container,
    mode: str,
    path: str,
    *,
    write: bool,
    stdin: Any = subprocess.DEVNULL,
    layers: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """The helper process for ``mode`` on ``path`` in ``container``; the mount
    point (stopped containers) is removed after it. ``layers``: the image's
    and writable layers only, even of a running container (one in a user
    namespace aside: only its supervisor mounts them right). Raises
    InvalidState, StorageError."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise SpecError(f"expected a path in the container, got {path!r}", key="path")
    container.reload()
    uid_shift, gid_shift = _shift(container)
    live = container.state.value in _LIVE and not (layers and not container._meta().userns)
    init, _ = container._pids() if live else (None, None)
    if write and init is None and container.state.value not in ("created", "exited"):
        # Its layers may be mounted (or about to be, by a restart policy):
        # a second writer on them would corrupt them.
        raise InvalidState(
            f"cannot write into container {container.name!r}: it is {container.state.value}"
            + (" (stopping)" if live else ""),
            name=container.name,
            state=container.state.value,
            operation="copy files into",
        )
    mountpoint: Path | None = None
    if init is not None:
        argv = [sys.executable, "-I", "-S", HELPER, mode, path, str(uid_shift), str(gid_shift),
                f"/proc/{init}/root"]
    else:
        options = _overlay_options(container, write=write)
        mountpoint = container._collection._store.staging_dir("archive")
        argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-S", HELPER,
                mode, path, str(uid_shift), str(gid_shift), str(mountpoint), options]
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as err:
        if mountpoint is not None:
            rmtree(mountpoint)
        raise StorageError(f"cannot start the archive helper: {err}", path=HELPER) from err
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            # 1 MB pipes, not 64 kB: 16 times fewer hand-overs between the
            # two ends, each a wait for the scheduler on a busy host.
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        if mountpoint is not None:
            with contextlib.suppress(OSError):
                os.rmdir(mountpoint)  # (empty: the mount went with the helper's namespace)


def _answer(proc: subprocess.Popen[bytes], container: Container, path: str) -> dict[str, Any]:
    """The helper's first line: the path's stat. Raises NotFound (no such
    path), SpecError (not a directory, a bad tar), StorageError."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        doc = json.loads(line)
    except ValueError:
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise StorageError(
            f"cannot reach {path!r} in container {container.name!r}: {err or 'the helper said nothing'}",
            path=path,
        ) from None
    if "error" not in doc:
        stat: dict[str, Any] = doc["stat"]
        return stat
    code, why = doc.get("errno"), doc["error"]
    where = f"in container {container.name!r}"
    if code == errno.ENOENT:
        raise NotFound(f"no such file or directory {path!r} {where}", name=path)
    if code in (errno.ENOTDIR, errno.EINVAL, errno.EISDIR, errno.EEXIST):
        raise SpecError(f"{why} {where}", key="path")
    raise StorageError(f"{why} {where}", path=path)


def get_archive(
    container: Container, path: str, *, follow_link: bool = False
) -> tuple[Iterator[bytes], dict[str, Any]]:
    """``path`` in the container as a tar stream (chunks of bytes) and its
    stat (docker's: name, size, mode as Go's bits, mtime, linkTarget), as
    ``docker cp`` reads it: a symlink as itself unless ``path`` ends in
    ``/`` or ``follow_link`` (then what it leads to, under its name);
    ``dir/.`` gives the directory's contents. Raises NotFound (no such
    path), InvalidState, StorageError; the stream raises StorageError if
    the helper fails midway."""
    ctx = _helper(container, "get-follow" if follow_link else "get", path, write=False)
    proc = ctx.__enter__()
    try:
        stat = _answer(proc, container, path)
    except BaseException:
        ctx.__exit__(None, None, None)
        raise
    return _stream(ctx, proc, container, path), stat


def stat_path(container: Container, path: str) -> dict[str, Any]:
    """docker's stat of ``path`` in the container (its last symlink not
    followed unless ``path`` ends in ``/``), as ``get_archive`` gives it.
    Raises NotFound, InvalidState, StorageError."""
    with _helper(container, "stat", path, write=False) as proc:
        return _answer(proc, container, path)


def _stream(
    ctx: contextlib.AbstractContextManager[Any],
    proc: subprocess.Popen[bytes],
    container: Container,
    path: str,
) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
        if proc.wait() != 0:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise StorageError(f"reading {path!r} of container {container.name!r} failed: {err}", path=path)
    finally:
        ctx.__exit__(None, None, None)


def export(container: Container) -> Iterator[bytes]:
    """The container's whole tree as a tar stream (``docker export``): its
    image's layers and writable layer, without what is mounted on them
    (/proc, /sys, /dev are empty dirs, volumes are left out). Raises
    InvalidState (a stopped user-namespaced container), StorageError."""
    ctx = _helper(container, "export", "/", write=False, layers=True)
    proc = ctx.__enter__()
    try:
        _answer(proc, container, "/")
    except BaseException:
        ctx.__exit__(None, None, None)
        raise
    return _stream(ctx, proc, container, "/")


def put_archive(container: Container, path: str, data: bytes | IO[bytes] | BinaryIO) -> bool:
    """Unpack the tar ``data`` (bytes or a binary stream) into the directory
    ``path`` of the container, running or not: modes and numeric owners
    kept, what a member replaces removed first. Returns True (docker-py's
    answer). Raises NotFound (no such directory), SpecError (not a
    directory, not a tar, a member leading out of ``path``), InvalidState,
    StorageError."""

    def write(out: BinaryIO) -> None:
        if isinstance(data, (bytes, bytearray, memoryview)):
            out.write(data)
        else:
            while chunk := data.read(CHUNK):
                out.write(chunk)

    return put_archive_from(container, path, write)


def copy_into(
    container: Container, dest: str, decide: Callable[[dict[str, Any] | None], tuple[str, Writer]]
) -> None:
    """``cp`` into a container with one helper: ``decide`` gets the stat of
    ``dest`` (None when it is not there) and returns the directory to
    unpack into and what writes the tar (see put_archive_from); what it
    raises is raised. Raises what put_archive raises."""
    with container._collection._lock(container.key):
        with _helper(container, "stat-put", dest, write=True, stdin=subprocess.PIPE) as proc:
            assert proc.stdin is not None
            try:
                st: dict[str, Any] | None = _answer(proc, container, dest)
            except NotFound:
                st = None
            where, write = decide(st)
            if not where or "\n" in where or "\0" in where:
                raise SpecError(f"expected a path in the container, got {where!r}", key="path")

            def tell_then_write(out: BinaryIO) -> None:
                out.write(where.encode("utf-8", "surrogateescape") + b"\n")
                write(out)

            _feed(proc, container, where, tell_then_write)


def put_archive_from(container: Container, path: str, write: Writer) -> bool:
    """``put_archive`` of the tar that ``write`` writes into the stream it is
    given (the unpacking process's stdin: no copy on the way, nothing
    spooled). Raises what put_archive raises."""
    lock = container._collection._lock(container.key)
    with lock:
        with _helper(container, "put", path, write=True, stdin=subprocess.PIPE) as proc:
            _feed(proc, container, path, write)
    return True


def _feed(proc: subprocess.Popen[bytes], container: Container, where: str, write: Writer) -> None:
    """Give the unpacking helper ``proc`` what ``write`` writes, end its
    input, then take its answer. Raises what put_archive raises."""
    assert proc.stdin is not None
    try:
        write(proc.stdin)  # type: ignore[arg-type]
    except BrokenPipeError:
        pass  # the helper stopped reading: its answer says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    _answer(proc, container, where)
    if proc.wait() != 0:
        raise StorageError(f"writing into {where!r} of container {container.name!r} failed", path=where)
