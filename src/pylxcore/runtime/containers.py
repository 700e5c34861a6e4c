"""Containers: provisioning, the main process, exec, logs, limits, lifecycle.

A container is a directory ``ROOT/containers/NAME`` (an LXC lxcpath entry, so
``lxc-ls -P ROOT/containers`` lists it) holding:

    config      the liblxc config (rootfs = overlay of the image's layers + upper/)
    meta.json   what it was created with (image, command, env, limits, …)
    upper/      its writable layer (work/ beside it is overlayfs's)
    run.spec    what the supervisor runs
    state.json  written by the supervisor: running / exited, exit code, OOM
    log         stdout and stderr records with timestamps (see _shim.py);
    log.1, …    the older ones, rotated (see _shim._Log and _LogCursor)
    lxc.log     liblxc's errors of the last start
    reserve     disk space the supervisor holds back for its last words (see _shim._Log)

The supervisor (``_shim.py``) outlives the Python process that started the
container, so a later ``Engine()`` in another process finds it, its logs and
its exit code.
"""

from __future__ import annotations

import _signal  # the C module: "signal" builds its enums at import (~1 ms)
import contextlib
import enum
import gc
import os
import posixpath
import select
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple, NoReturn, Sequence, Union

import attrs

from pylxcore._log import log
from pylxcore.errors import (
    Conflict,
    ContainerError,
    ContainerNotFound,
    ImageNotFound,
    InvalidState,
    LimitError,
    LXCError,
    SpecError,
    StorageError,
    TimeoutExpired,
)
from pylxcore.runtime import liblxc as _liblxc
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.lxcconfig import DEFAULT_PATH, SECCOMP_PROFILE, RunConfig, render, split_env
from pylxcore.runtime.rootfs import LayerStack, make_target, overlay_spec
from pylxcore.runtime.userns import subordinate_ids
from pylxcore.runtime.userns import write_spec as write_userns_spec
from pylxcore.spec import Limits, Mount, parse_size, validate, validate_container_name
from pylxcore.store import atomic_write, canonical_json, read_json, rmtree
from pylxcore.supervisor import shim as _shim

if TYPE_CHECKING:
    from pylxcore.engine import Engine

_SHIM = str(Path(_shim.__file__).resolve())
_SHIM_PROGRAMS: dict[Path, str] = {}


def _fork_supervisor(ctrdir: str) -> tuple[int, bytes]:
    """Run ``_shim.main`` in a fork of this process; (its exit code, its stderr).

    The fork closes every descriptor it inherited before it starts anything,
    so the container's supervisor never holds the caller's files or sockets."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child never returns)
        # No garbage collection in the fork: a finalizer of one of the caller's
        # objects (a file, a Popen) would close an fd number the supervisor
        # has reused since closerange(), e.g. the one its last state goes to.
        gc.disable()
        code = 1
        try:
            # Nor the caller's signal handling: its handlers and wakeup fd
            # (asyncio's, Jupyter's) would fire in the supervisor.
            _signal.set_wakeup_fd(-1)
            for signum in _signal.valid_signals():
                if callable(_signal.getsignal(signum)):
                    _signal.signal(signum, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, set())
            os.dup2(w, 2)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            code = _shim.main(["pylxcore-shim", ctrdir])
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def _shim_program(store: Any) -> str:
    """The supervisor as compiled bytecode under the store root: a script run
    by path is compiled anew at every start (~3 ms), bytecode is not."""
    program = _SHIM_PROGRAMS.get(store.root)
    if program is None:
        import hashlib  # noqa: PLC0415  (deferred: 4 ms of every import pylxcore)
        import py_compile  # noqa: PLC0415  (once per store root and process)

        source = Path(_SHIM).read_bytes()
        tag = hashlib.sha256(source + sys.version.encode()).hexdigest()[:16]
        target = store.root / "bin" / f"shim-{tag}.pyc"
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            tmp = store.staging_dir("shim") / "shim.pyc"
            py_compile.compile(_SHIM, cfile=str(tmp), doraise=True)
            os.replace(tmp, target)
            rmtree(tmp.parent)
        program = _SHIM_PROGRAMS[store.root] = str(target)
    return program


Command = Union[str, Sequence[str], None]
# LXCError.detail when a container's program is not in it (the CLI exits 127).
PROGRAM_NOT_FOUND = "program not found"

# The default cap of a container's log: Docker's recommended json-file
# options (max-size 10m, max-file 3). At most ~30 MB a container on disk, and
# the last 10 MB or more (tens of thousands of lines) always at hand.
DEFAULT_LOG_MAX_SIZE = 10 << 20
DEFAULT_LOG_MAX_FILES = 3
# At most this many log files: each rotation renames them all.
_MAX_LOG_FILES = 100
# Below this memory limit (Docker's floor for --memory), a container liblxc
# could not start is told it needs more memory.
_MIN_START_MEMORY = 6 << 20


def _log_options(max_size: int | str | None, max_files: int) -> dict[str, int]:
    """The meta.json fields of a log cap: ``log_max_size`` in bytes (-1: no cap)
    and ``log_max_files``. Raises SpecError for a bad size or number of files."""
    if max_size is None:
        size = DEFAULT_LOG_MAX_SIZE
    elif max_size in (-1, "-1") and not isinstance(max_size, bool):
        size = -1
    else:
        size = parse_size(max_size, key="log_max_size")
    if isinstance(max_files, bool) or not isinstance(max_files, int) or not 1 <= max_files <= _MAX_LOG_FILES:
        raise SpecError(
            f"expected a number of files from 1 to {_MAX_LOG_FILES}, got {max_files!r}", key="log_max_files"
        )
    return {"log_max_size": size, "log_max_files": max_files}


def _lxc_reason(line: str) -> str:
    """The message of one lxc.log line, without what comes before it
    ("lxc-execute NAME TIME ERROR    overlay - ../src/lxc/…/overlay.c:ovl_mount:490 - ")."""
    parts = line.split(" - ", 2)
    return parts[2] if len(parts) == 3 else line


def _filesystem_type(path: Path) -> str:
    """The type of the filesystem that holds ``path`` ("overlay", "ext4", …;
    "" when unknown), from the deepest mount point above it."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo") as fh:
            lines = fh.readlines()
    except OSError:
        return ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or not rfields:
            continue
        # The kernel writes these four in a mount point as octal escapes.
        point = fields[4]
        for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
            point = point.replace(escaped, char)
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, rfields[0]
    return fstype


class ContainerState(str, enum.Enum):
    """The life stages of a container (the values read like ``docker ps``)."""

    CREATED = "created"
    RUNNING = "running"
    FROZEN = "paused"
    EXITED = "exited"


class ExecResult(NamedTuple):
    """The result of ``exec`` (and of ``run`` with ``detach=False``)."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> bytes:
        return self.stdout + self.stderr


@attrs.frozen
class LogEntry:
    """One chunk of output as the container wrote it."""

    time: float
    stream: str  # "stdout" | "stderr"
    data: bytes


@attrs.frozen
class Stats:
    """Resource use read from the container's cgroups (None where unreadable)."""

    memory_bytes: int | None
    memory_peak_bytes: int | None
    memory_limit_bytes: int | None
    cpu_seconds: float | None
    pids: int | None


def _signal_number(sig: int | str) -> int:
    if isinstance(sig, int):
        return sig
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(_signal, name))
    except AttributeError:
        raise ValueError(f"unknown signal {sig!r}") from None


def _executable_found(meta: dict[str, Any], upper: Path, store: Any) -> bool:
    """Whether the command's program exists in the container's tree (its
    writable layer over the image's), looked up the way execvp would: a name
    with a slash as a path (from the workdir), else along $PATH. A program
    under a bind mount is taken on trust: the mount is not there yet."""
    program = meta["command"][0]
    if "/" in program:
        candidates = [posixpath.join(meta["workdir"], program)]
    else:
        path = meta["env"].get("PATH", DEFAULT_PATH)
        candidates = [posixpath.join(d or meta["workdir"], program) for d in path.split(":")]
    targets = [posixpath.normpath(m["target"]) for m in meta["mounts"]]
    for candidate in candidates:
        normal = posixpath.normpath(candidate)
        if any(normal == t or normal.startswith(t.rstrip("/") + "/") for t in targets):
            return True
    # The common case first, with plain strings (this runs at every start):
    # the program as a file or link in the topmost layer that has the path.
    dirs = [str(upper), *(str(store.layer_dir(k) / "fs") for k in reversed(meta["layers"]))]
    for candidate in candidates:
        for layer in dirs:
            try:
                mode = os.lstat(layer + posixpath.normpath(candidate)).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                return True
            break  # a dir or a whiteout: it hides the layers below
    # Else the path may run through symlinked dirs (/bin -> usr/bin): resolve
    # it as the container will see it.
    stack = LayerStack([Path(p) for p in dirs])
    for candidate in candidates:
        try:
            real = stack.lookup(stack.resolve(candidate))
        except StorageError:
            return True  # a symlink loop: let the kernel say so
        if real is not None and not real.is_dir():
            return True
    return False


def _lookup_user(stack: LayerStack, user: str) -> tuple[int, int]:
    """uid and gid for "name", "uid", "name:group" or "uid:gid", from the image's files."""
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        data = stack.read_bytes(path) or b""
        return [
            line.split(":")
            for line in data.decode("utf-8", "replace").splitlines()
            if line and line[0] != "#"
        ]

    if name.isdigit():
        uid, gid = int(name), int(name)
        for row in table("/etc/passwd"):
            if len(row) > 3 and row[2] == name and row[3].isdigit():
                gid = int(row[3])
                break
    else:
        for row in table("/etc/passwd"):
            if len(row) > 3 and row[0] == name and row[2].isdigit() and row[3].isdigit():
                uid, gid = int(row[2]), int(row[3])
                break
        else:
            raise SpecError(f"user {name!r} is not in the image's /etc/passwd", key="user")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for row in table("/etc/group"):
                if len(row) > 2 and row[0] == group and row[2].isdigit():
                    gid = int(row[2])
                    break
            else:
                raise SpecError(f"group {group!r} is not in the image's /etc/group", key="user")
    return uid, gid


def _command(command: Command, default: Sequence[str] | None) -> list[str]:
    argv = validate.command(command, "command")
    if argv is None:
        if not default:
            raise SpecError("no command given and the image has no cmd", key="command")
        return list(default)
    return list(argv)


@attrs.define(eq=False)
class Container:
    """A handle on one container. ``state``, ``exit_code`` and ``oom_killed``
    are as of the last ``reload()`` (every method that changes the container
    reloads); they never do I/O on attribute access."""

    _collection: ContainerCollection = attrs.field(repr=False)
    name: str
    id: str
    image: str  # the image reference it was created from
    image_id: str = attrs.field(repr=False)
    state: ContainerState = ContainerState.CREATED
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = attrs.field(default=None, repr=False)
    finished_at: float | None = attrs.field(default=None, repr=False)

    # -- reading -------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self._collection._dir(self.name)

    def _meta(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = read_json(self.dir / "meta.json")
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.name!r} no longer exists", name=self.name) from None
        return data

    def _raw_state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = read_json(self.dir / "state.json")
        except FileNotFoundError:
            if not self.dir.exists():
                raise ContainerNotFound(f"container {self.name!r} no longer exists", name=self.name) from None
            return None
        except ValueError:
            return None
        return data

    def _shim_alive(self, st: dict[str, Any]) -> bool:
        pid = st.get("shim_pid")
        return pid is not None and _shim.process_start_time(int(pid)) == st.get("shim_start")

    def _frozen(self) -> bool:
        layout = host_layout()
        entry = layout.controllers.get("freezer")
        cg = self._collection._cgroup_dir(self.name)
        try:
            if entry and entry[0] == "v1":
                with open(os.path.join(entry[1], cg, "freezer.state")) as fh:
                    return fh.read().strip() in ("FROZEN", "FREEZING")
            unified = next((p for v, p in layout.controllers.values() if v == "v2"), None)
            if unified:
                with open(os.path.join(unified, cg, "cgroup.freeze")) as fh:
                    return fh.read().strip() == "1"
        except OSError:
            return False
        return False

    def reload(self) -> Container:
        """Read the container's state from disk. Raises ContainerNotFound."""
        st = self._raw_state()
        if st is None:
            self.state = ContainerState.CREATED
            self.exit_code, self.oom_killed = None, False
            self.started_at = self.finished_at = None
            return self
        # Ask whether the supervisor lives once only: asking again could see
        # it exit and mistake a clean end for a killed supervisor.
        alive = st.get("status") == "running" and self._shim_alive(st)
        if st.get("status") == "running" and not alive:
            # Read again: the supervisor may have written its last word and
            # exited between our read and the liveness check.
            st = self._raw_state() or st
        self.started_at = st.get("started_at")
        if st.get("status") == "running" and alive:
            self.state = ContainerState.FROZEN if self._frozen() else ContainerState.RUNNING
            self.exit_code, self.oom_killed, self.finished_at = None, False, None
        elif st.get("status") == "running":
            # The supervisor died without its last word (it was killed): the
            # exit code is lost; the state is exited all the same.
            self.state = ContainerState.EXITED
            self.exit_code, self.oom_killed, self.finished_at = None, False, None
        else:
            self.state = ContainerState.EXITED
            self.exit_code = st.get("exit_code")
            self.oom_killed = bool(st.get("oom_killed"))
            self.finished_at = st.get("finished_at")
        return self

    def status(self) -> str:
        """The current state's name, read now ("created", "running", "paused", "exited")."""
        return self.reload().state.value

    def _expect(self, operation: str, *allowed: ContainerState) -> None:
        self.reload()
        if self.state not in allowed:
            raise InvalidState(
                f"cannot {operation} container {self.name!r}: it is {self.state.value}",
                name=self.name,
                state=self.state.value,
                operation=operation,
            )

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Container:
        """Start the main process. Raises InvalidState (already running);
        when liblxc cannot start the container: LimitError (a limit too small
        to start, e.g. memory), StorageError (the store root's filesystem
        cannot hold it: overlayfs), else LXCError (also when the program is not
        in the container), each with liblxc's reason. The container then
        stays as it was (created, or exited) and can be removed."""
        with self._collection._lock(self.name):
            self._expect("start", ContainerState.CREATED, ContainerState.EXITED)
            self._collection._launch(self.name, self._meta(), auto_remove=False)
        return self.reload()

    def _pids(self) -> tuple[int | None, int | None]:
        """(init pid, main process pid) on the host, from the supervisor's records."""
        st = self._raw_state() or {}
        lxc_pid = st.get("lxc_pid")
        if not lxc_pid or not self._shim_alive(st):
            return None, None
        # The main process is pid 2 of the container, not init's first child:
        # once it has gone, an orphan reparented to init would be taken for it.
        init, main, _ = _shim.find_pids(int(lxc_pid))
        return init, main

    def kill(self, signal: int | str = "SIGKILL") -> None:
        """Send ``signal`` to the main process (like ``docker kill``). Raises InvalidState."""
        signum = _signal_number(signal)
        self._expect("kill", ContainerState.RUNNING, ContainerState.FROZEN)
        init, main = self._pids()
        # SIGKILL goes to the main process too, not to init: killing init loses
        # the exit code (lxc-execute reports 1, not 137). The supervisor then has
        # init end whatever else is left.
        target = main or init
        if target is None:
            return  # it is exiting right now
        if self.state is ContainerState.FROZEN:
            self.unfreeze()
        try:
            os.kill(target, signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM to the main process, SIGKILL after ``timeout`` seconds; returns
        the exit code. Raises InvalidState when it is not running."""
        self._expect("stop", ContainerState.RUNNING, ContainerState.FROZEN)
        if self.state is ContainerState.FROZEN:
            self.unfreeze()
        init, main = self._pids()
        if main or init:
            try:
                os.kill(main or init or 0, _signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            return self.wait(timeout=timeout)
        except TimeoutExpired:
            pass
        # SIGKILL the main process first so that the exit code is 137 (like
        # docker stop); init alone only if the container still does not end.
        init, main = self._pids()
        if main:
            try:
                os.kill(main, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                return self.wait(timeout=5)
            except TimeoutExpired:
                init, _ = self._pids()
        if init:
            try:
                os.kill(init, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.wait(timeout=30)

    def restart(self, timeout: float = 10) -> Container:
        """Stop (if running) and start again; the writable layer is kept."""
        if self.status() in ("running", "paused"):
            self.stop(timeout=timeout)
        return self.start()

    def freeze(self) -> None:
        """Freeze every process (``docker pause``). Raises InvalidState, LXCError."""
        self._expect("freeze", ContainerState.RUNNING)
        self._collection._handle(self.name).freeze()
        self.reload()

    def unfreeze(self) -> None:
        """Thaw a frozen container. Raises InvalidState, LXCError."""
        self._expect("unfreeze", ContainerState.FROZEN)
        self._collection._handle(self.name).unfreeze()
        self.reload()

    pause = freeze
    unpause = unfreeze

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the main process exits; return its exit code (None if the
        supervisor was killed and the code is lost). Raises TimeoutExpired,
        InvalidState (never started)."""
        self.reload()
        if self.state is ContainerState.CREATED:
            raise InvalidState(
                f"cannot wait for container {self.name!r}: it was never started",
                name=self.name,
                state=self.state.value,
                operation="wait",
            )
        st = self._raw_state() or {}
        if self.state is not ContainerState.EXITED:
            pid = int(st["shim_pid"])
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                pidfd = None
            if pidfd is not None:
                try:
                    # The pid may have been reused between reading and opening.
                    if _shim.process_start_time(pid) == st.get("shim_start"):
                        ready, _, _ = select.select([pidfd], [], [], timeout)
                        if not ready:
                            raise TimeoutExpired(
                                f"container {self.name!r} still running after {timeout}s",
                                operation="wait",
                                timeout=timeout,
                            )
                finally:
                    os.close(pidfd)
            self.reload()
        return self.exit_code

    def remove(self, *, force: bool = False) -> None:
        """Delete the container and its writable layer. A running container needs
        ``force=True`` (it is killed). Raises InvalidState, ContainerNotFound."""
        self.reload()
        if self.state in (ContainerState.RUNNING, ContainerState.FROZEN):
            if not force:
                raise InvalidState(
                    f"cannot remove container {self.name!r}: it is {self.state.value}"
                    " (stop it or use force=True)",
                    name=self.name,
                    state=self.state.value,
                    operation="remove",
                )
            self.kill("SIGKILL")
            self.wait(timeout=30)
        self._collection._delete(self.name)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove(force=True)
        except ContainerNotFound:
            pass

    # -- exec ----------------------------------------------------------------

    def exec_stream(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> ExecStream:
        """Run ``cmd`` in the running container; iterate the returned stream for
        ``(stream_name, bytes)`` chunks as they come, then read ``.exit_code``.
        Raises InvalidState (not running), SpecError (bad command or user),
        LimitError (the container is at its pids limit: no process can start in it), LXCError."""
        argv = _command(cmd, None)
        self._expect("exec in", ContainerState.RUNNING)
        meta = self._meta()
        handle = self._collection._handle(self.name)
        try:
            # No liblxc state poll here: the supervisor reports a container
            # started only once its main process runs, so attach can go ahead.
            if user is None:
                uid, gid = meta["uid"], meta["gid"]
            else:
                init, _ = self._pids()
                root = Path(f"/proc/{init}/root") if init else None
                stack = LayerStack([root] if root else [])
                uid, gid = _lookup_user(stack, user)
            full_env = {"PATH": DEFAULT_PATH, "HOSTNAME": self.name, "HOME": "/root" if uid == 0 else "/"}
            full_env.update(meta["env"])
            full_env.update(env or {})
            return ExecStream(handle, argv, full_env, workdir or meta["workdir"], uid, gid, stdin, timeout)
        except LXCError as err:
            # Stopped or removed by another process meanwhile: report that
            # (InvalidState, ContainerNotFound) rather than liblxc's failure.
            self._expect("exec in", ContainerState.RUNNING)
            # liblxc reports a fork that fails inside the container as it does
            # a container that is going (NOT_RUNNING): tell the pids limit first.
            limit = meta["limits"].get("pids")
            if limit is not None and (self._collection._stats(self.name).pids or 0) >= limit:
                raise LimitError(
                    f"cannot exec in container {self.name!r}: it has reached its pids limit ({limit}),"
                    " so no process can start in it until some of its processes exit",
                    limit="pids",
                    value=limit,
                ) from None  # (liblxc's own words, "not running", would mislead)
            # liblxc finding no running init means it is on its way out even
            # when its monitor and our supervisor have not noticed yet.
            stopping = err.detail == _liblxc.NOT_RUNNING
            if stopping or self._collection._handle(self.name).state() not in ("RUNNING", "FROZEN"):
                raise InvalidState(
                    f"cannot exec in container {self.name!r}: it is stopping",
                    name=self.name,
                    state="stopping",
                    operation="exec in",
                ) from None
            raise

    def exec(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run ``cmd`` in the running container and wait: ``ExecResult(exit_code,
        stdout, stderr)``. A timeout kills the command and raises TimeoutExpired.
        Raises InvalidState, SpecError, LXCError."""
        stream = self.exec_stream(cmd, env=env, workdir=workdir, user=user, stdin=stdin, timeout=timeout)
        out: list[bytes] = []
        err: list[bytes] = []
        for name, chunk in stream:
            (out if name == "stdout" else err).append(chunk)
        assert stream.exit_code is not None
        return ExecResult(stream.exit_code, b"".join(out), b"".join(err))

    # -- logs ----------------------------------------------------------------

    def log_entries(self, *, since: float | None = None) -> list[LogEntry]:
        """Every chunk the main process wrote that its log keeps (across
        rotations, oldest first), with its time and stream."""
        cursor = _LogCursor(self.dir)
        try:
            entries = cursor.read()
        finally:
            cursor.close()
        if since is not None:
            entries = [e for e in entries if e.time >= since]
        return entries

    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        tail: int | None = None,
        since: float | None = None,
        timestamps: bool = False,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """The main process's output: bytes; with ``follow=True`` an iterator of
        bytes chunks that ends when the container exits (or raises
        TimeoutExpired after ``timeout`` seconds, never hanging forever).
        ``tail=N`` keeps the last N lines; ``since`` is a unix time."""
        streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        if follow:
            return self._follow(streams, tail, since, timestamps, timeout)
        entries = [e for e in self.log_entries(since=since) if e.stream in streams]
        return b"".join(_render(_tail(entries, tail), timestamps))

    def _follow(
        self,
        streams: set[str],
        tail: int | None,
        since: float | None,
        timestamps: bool,
        timeout: float | None,
    ) -> Iterator[bytes]:
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = _LogCursor(self.dir)
        try:
            entries = [e for e in cursor.read() if e.stream in streams and (since is None or e.time >= since)]
            yield from _render(_tail(entries, tail), timestamps)
            delay = 0.005
            while True:
                running = self.status() in ("running", "paused")
                new = cursor.read()
                if new:
                    delay = 0.005
                    yield from _render([e for e in new if e.stream in streams], timestamps)
                    continue
                if not running:
                    # One last read: the supervisor writes the last records before its state.
                    yield from _render([e for e in cursor.read() if e.stream in streams], timestamps)
                    return
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutExpired(
                        f"following the logs of {self.name!r}: still running after {timeout}s",
                        operation="logs",
                        timeout=timeout,
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        finally:
            cursor.close()

    # -- resources -------------------------------------------------------------

    def stats(self) -> Stats:
        """Memory (current, peak, limit), CPU seconds and pid count from the
        container's cgroups. Raises InvalidState when it is not running."""
        self._expect("read stats of", ContainerState.RUNNING, ContainerState.FROZEN)
        return self._collection._stats(self.name)

    def inspect(self) -> dict[str, Any]:
        """Everything known about the container, as plain data (``docker inspect``)."""
        self.reload()
        meta = self._meta()
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "image_id": self.image_id,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "created": meta["created"],
            "command": meta["command"],
            "env": meta["env"],
            "workdir": meta["workdir"],
            "user": meta["user"],
            "network": meta["network"],
            "limits": meta["limits"],
            "mounts": meta["mounts"],
            "labels": meta.get("labels", {}),
            "userns": meta.get("userns", False),
            "dir": str(self.dir),
        }

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.state.value} image={self.image} id={self.id[:12]}>"

    def _repr_html_(self) -> str:
        self.reload()
        meta = self._meta()
        rows = [
            ("name", self.name),
            ("id", self.id[:12]),
            ("image", self.image),
            ("state", self.state.value + (f" (exit {self.exit_code})" if self.exit_code is not None else "")),
            ("command", " ".join(meta["command"])),
            ("limits", ", ".join(f"{k}={v}" for k, v in meta["limits"].items()) or "none"),
            ("network", meta["network"]),
        ]
        if self.state is ContainerState.RUNNING:
            s = self.stats()
            rows.append(("memory", f"{(s.memory_bytes or 0) / 1048576:.1f} MiB"))
            rows.append(("cpu", f"{(s.cpu_seconds or 0):.2f} s"))
            rows.append(("pids", str(s.pids)))
        import html  # noqa: PLC0415  (deferred: only Jupyter needs it)

        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        return f"<table>{body}</table>"


class ExecStream:
    """Output of an exec as it comes: iterate for ``(stream, bytes)``; afterwards
    ``exit_code`` is set. Never loses the exit code, never hangs past ``timeout``."""

    def __init__(
        self,
        handle: _liblxc.Handle,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        uid: int,
        gid: int,
        stdin: bytes | None,
        timeout: float | None,
    ) -> None:
        self.argv = argv
        self._name = handle.name
        self.exit_code: int | None = None
        self._timeout = timeout
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe()
        try:
            self.pid = handle.attach(
                argv, env=env, cwd=workdir, uid=uid, gid=gid, stdin=in_r, stdout=out_w, stderr=err_w
            )
        except BaseException:
            for fd in (out_r, err_r, in_w):
                os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, in_r):
                os.close(fd)
        self._fds = {out_r: "stdout", err_r: "stderr"}
        if stdin:
            # A thread, so a large input cannot deadlock against unread output.
            def feed() -> None:
                try:
                    os.write(in_w, stdin)
                except OSError:
                    pass
                finally:
                    os.close(in_w)

            import threading  # noqa: PLC0415  (deferred: only exec with stdin needs it)

            threading.Thread(target=feed, daemon=True).start()
        else:
            os.close(in_w)
        self._started = time.monotonic()

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        import selectors  # noqa: PLC0415  (deferred: only exec needs it)

        sel = selectors.DefaultSelector()
        for fd in self._fds:
            sel.register(fd, selectors.EVENT_READ)
        try:
            while sel.get_map():
                left = None if self._timeout is None else self._timeout - (time.monotonic() - self._started)
                if left is not None and left <= 0:
                    self._kill()
                    raise TimeoutExpired(
                        f"exec {self.argv!r} still running after {self._timeout}s: killed",
                        operation="exec",
                        timeout=self._timeout,
                    )
                for key, _ in sel.select(left):
                    fd = key.fd
                    data = os.read(fd, 65536)
                    if not data:
                        sel.unregister(fd)
                        os.close(fd)
                        continue
                    yield self._fds[fd], data
        finally:
            for left_fd in [k.fd for k in sel.get_map().values()]:
                sel.unregister(left_fd)
                os.close(left_fd)
            sel.close()
        self.wait()

    def _kill(self) -> None:
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()

    def wait(self) -> int:
        """Wait for the command (after the output is read); return its exit code.
        Raises InvalidState when liblxc lost the process because the container
        stopped while attaching (its exit code cannot be known then)."""
        if self.exit_code is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                raise InvalidState(
                    f"exec {self.argv!r} in container {self._name!r}: the container stopped while it started;"
                    " its exit code is unknown",
                    name=self._name,
                    state="stopping",
                    operation="exec in",
                ) from None
            self.exit_code = os.waitstatus_to_exitcode(status)
            if self.exit_code < 0:
                self.exit_code = 128 - self.exit_code
        return self.exit_code


def _parse_log(data: bytes) -> tuple[list[LogEntry], int]:
    """The whole records at the start of ``data``, and how many bytes they take."""
    entries = []
    pos = 0
    size = _shim.RECORD.size
    while pos + size <= len(data):
        ts, stream, length = _shim.RECORD.unpack_from(data, pos)
        if pos + size + length > len(data):
            break  # a record still being written
        entries.append(
            LogEntry(
                ts, "stdout" if stream == _shim.STDOUT else "stderr", data[pos + size : pos + size + length]
            )
        )
        pos += size + length
    return entries, pos


class _LogCursor:
    """Reads a container's log in order across its rotations, each record once.

    The supervisor rotates by renames (``log`` becomes ``log.1``, which becomes
    ``log.2``, …; see _shim._Log), holding a flock on the container's dir. The
    cursor looks at the names under that lock (shared), so it sees a rotation
    whole or not at all; and it keeps the file it reads open: a name passes
    from file to file, an open file stays the same. Once that file is no
    longer the newest it is drained and the cursor goes on with the one
    written after it, found by its inode. A reader left more than
    ``log_max_files`` rotations behind goes on with the oldest file left (the
    rest was rotated away, as with Docker). Close it after use."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._fd: int | None = None
        self._ino = 0
        self._rest = b""  # the start of a record still being written

    @staticmethod
    def _files(dir_fd: int) -> list[tuple[str, int]]:
        """(name, inode) of each log file in the dir ``dir_fd``, oldest first."""
        names = [n for n in os.listdir(dir_fd) if n == "log" or (n[:4] == "log." and n[4:].isdigit())]
        names.sort(key=lambda n: int(n[4:]) if n != "log" else 0, reverse=True)
        return [(n, os.stat(n, dir_fd=dir_fd).st_ino) for n in names]

    def _next(self) -> tuple[int, int, bool] | None:
        """Open the file that follows the one being read (the oldest when none
        is): (fd, inode, whether it is the newest); None while there is none
        (ours is the newest, or the container has been removed)."""
        import fcntl  # noqa: PLC0415  (deferred: only logs need it)

        try:
            dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_SH)
            files = self._files(dir_fd)
            inos = [ino for _, ino in files]
            if self._fd is not None and self._ino in inos:
                following = inos.index(self._ino) + 1
                target = files[following] if following < len(files) else None
            else:
                target = files[0] if files else None
            if target is None:
                return None
            fd = os.open(target[0], os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            return fd, target[1], target == files[-1]
        except FileNotFoundError:
            return None  # removed meanwhile (the supervisor renames only under the lock)
        finally:
            os.close(dir_fd)  # (which unlocks)

    def read(self) -> list[LogEntry]:
        """The records written since the last read (all of them, the first time)."""
        entries: list[LogEntry] = []
        newest = False  # whether our file was the newest when the names were last looked at
        if self._fd is None:
            first = self._next()
            if first is None:
                return entries
            self._fd, self._ino, newest = first
        while True:
            # Looked for before the file is drained: a file that has been
            # rotated already gets no more writes, so draining it after reads
            # all. (One that was the newest then is read to its end now, and
            # whatever follows it at the next read.)
            following = None if newest else self._next()
            chunks = [self._rest]
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
            new, used = _parse_log(data)
            entries += new
            self._rest = data[used:]
            if following is None:
                return entries
            os.close(self._fd)
            (self._fd, self._ino, newest), self._rest = following, b""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _tail(entries: list[LogEntry], tail: int | None) -> list[LogEntry]:
    if tail is None:
        return entries
    if tail <= 0:
        return []
    # Count lines from the end; a chunk may hold several.
    out: list[LogEntry] = []
    lines = 0
    for e in reversed(entries):
        n = e.data.count(b"\n") or 1
        if lines + n > tail:
            keep = tail - lines
            if keep > 0:
                parts = e.data.splitlines(keepends=True)
                out.append(LogEntry(e.time, e.stream, b"".join(parts[-keep:])))
            break
        out.append(e)
        lines += n
    return list(reversed(out))


def _render(entries: list[LogEntry], timestamps: bool) -> list[bytes]:
    if not timestamps:
        return [e.data for e in entries]
    out = []
    for e in entries:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e.time)) + f".{int(e.time % 1 * 1e6):06d}Z "
        out += [stamp.encode() + line for line in e.data.splitlines(keepends=True)]
    return out


class ContainerCollection:
    """``engine.containers``: create, run, get and list containers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store

    # -- paths and helpers -----------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self._store.containers_dir / name

    def _cgroup_dir(self, name: str) -> str:
        return f"pylxcore-{self._store.root_id}-{name}"

    def _lock(self, name: str) -> Any:
        return self._store.lock(f"ctr-{name}")

    def _handle(self, name: str) -> _liblxc.Handle:
        return _liblxc.Handle(name, str(self._store.containers_dir))

    def _load(self, name: str) -> Container:
        try:
            meta = read_json(self._dir(name) / "meta.json")
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(f"no container {name!r} in {self._store.root}", name=name) from None
        except ValueError as err:
            raise StorageError(
                f"container {name!r} has an unreadable record: {err}", path=str(self._dir(name))
            ) from err
        return Container(self, meta["name"], meta["id"], meta["image"], meta["image_id"]).reload()

    def _metas(self) -> list[dict[str, Any]]:
        out = []
        for d in self._store.containers_dir.iterdir():
            try:
                out.append(read_json(d / "meta.json"))
            except (OSError, ValueError):
                continue
        return out

    def _layers_in_use(self) -> set[str]:
        return {k for m in self._metas() for k in m.get("layers", [])}

    def _images_in_use(self) -> set[str]:
        return {m["image_id"] for m in self._metas()}

    def _users_of(self, image_id: str) -> list[str]:
        return [m["name"] for m in self._metas() if m.get("image_id") == image_id]

    # -- public ----------------------------------------------------------------

    def get(self, name: str) -> Container:
        """The container named ``name`` (or with that id or id prefix). Raises ContainerNotFound."""
        if not isinstance(name, str):
            raise TypeError(f"a container name is a str, not {type(name).__name__}")
        try:
            validate_container_name(name)
            if (self._dir(name) / "meta.json").exists():
                return self._load(name)
        except SpecError:
            pass
        if len(name) >= 4:
            matches = [m for m in self._metas() if m["id"].startswith(name)]
            if len(matches) == 1:
                return self._load(matches[0]["name"])
        raise ContainerNotFound(f"no container {name!r} in {self._store.root}", name=name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ContainerNotFound:
            return False
        return True

    def list(self, *, all: bool = False) -> list[Container]:  # noqa: A002  (docker-py's name)
        """Running containers, or every container with ``all=True``; oldest first."""
        out = []
        metas = sorted(self._metas(), key=lambda m: m.get("created", 0))
        for m in metas:
            try:
                c = self._load(m["name"])
            except (ContainerNotFound, StorageError):
                continue  # removed while we looked
            if all or c.state in (ContainerState.RUNNING, ContainerState.FROZEN):
                out.append(c)
        return out

    def create(
        self,
        image: str,
        command: Command = None,
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        limits: Limits | None = None,
        mounts: Sequence[Mount] = (),
        network: str = "none",
        labels: Mapping[str, str] | None = None,
        userns: bool | None = None,
        log_max_size: int | str | None = None,
        log_max_files: int = DEFAULT_LOG_MAX_FILES,
    ) -> Container:
        """Provision a container from a built image, without starting it: an
        overlay of the image's layers plus an empty writable layer (no copy).

        ``userns=True`` (default: the engine's ``userns``) runs it in a user
        namespace: its root is an unprivileged host uid from root's range in
        /etc/subuid; the shared layers are mounted idmapped, not copied.

        Its log rotates like Docker's json-file driver: past ``log_max_size``
        (bytes or "10M"; None: 10 MB; -1: no cap) the current file is put
        aside, and ``log_max_files`` files (1 to 100; default 3) are kept.
        ``logs()`` reads across them; what was rotated away is gone. Raises
        SpecError for a bad log option.

        Raises ImageNotFound, Conflict (name taken), SpecError (bad name,
        command, env, mount or user), LimitError (a limit the host cannot enforce),
        LXCError (userns=True on a host with no subordinate ids for root).
        """
        record = self._engine.images.record(image)
        cfg = record["config"]
        if name is None:
            name = "px-" + os.urandom(5).hex()
        validate_container_name(name)
        argv = _command(command, cfg.get("cmd"))
        merged_env = validate.env({**(cfg.get("env") or {}), **validate.env(env)})
        if network not in ("none", "host"):
            raise SpecError(f"network must be 'none' or 'host', not {network!r}", key="network")
        if userns is None:
            userns = self._engine.userns
        if not isinstance(userns, bool):
            raise TypeError(f"userns must be True, False or None, not {userns!r}")
        ids = subordinate_ids() if userns else None
        labels = validate.labels(labels)
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
        eff_limits = Limits.from_dict(cfg.get("limits") or {}).merged(limits or Limits())
        mounts = list(mounts)
        for i, m in enumerate(mounts):
            if not isinstance(m, Mount):
                raise TypeError(f"mounts[{i}] must be a Mount, not {type(m).__name__}")
            if not os.path.exists(m.source):
                raise SpecError(f"mount source {m.source!r} does not exist", key=f"mounts[{i}].source")
        workdir = validate.workdir(workdir or cfg.get("workdir") or "/")
        user = validate.user(user or cfg.get("user") or "root")
        layers = list(record["layers"])
        stack = LayerStack([self._store.layer_dir(k) / "fs" for k in reversed(layers)])
        uid, gid = (0, 0) if user in ("root", "0", "0:0") else _lookup_user(stack, user)

        d = self._dir(name)
        with self._store.lock("gc", shared=True):
            # The image may have been removed and its layers pruned since it was
            # read above; under this lock no prune runs, so look once more.
            if not all(self._store.has_layer(k) for k in layers):
                raise ImageNotFound(f"image {image!r} was removed meanwhile", name=image)
            try:
                d.mkdir(mode=0o700)  # the umask can only narrow it
            except FileExistsError:
                raise Conflict(f"a container named {name!r} already exists", name=name) from None
            try:
                (d / "upper").mkdir()
                if ids is None:
                    rootfs = overlay_spec([self._store.short_path(k) for k in reversed(layers)], d / "upper")
                else:
                    rootfs = f"dir:{_shim.USERNS_ROOTFS}"  # in its supervisor's mount namespace
                    keep = [str(SECCOMP_PROFILE), *(m.source for m in mounts)]
                    self._prepare_userns(d, layers, ids, keep)
                shift = (0, 0) if ids is None else (ids[0], ids[2])
                targets = [
                    make_target(
                        d / "upper",
                        stack,
                        m.target,
                        file=not os.path.isdir(m.source),
                        key=f"mounts[{i}].target",
                        shift=shift,
                    )
                    for i, m in enumerate(mounts)
                ]
                run_cfg = RunConfig(
                    name=name,
                    rootfs=rootfs,
                    idmap=ids,
                    cgroup_dir=self._cgroup_dir(name),
                    env=sorted(merged_env.items()),
                    cwd=workdir,
                    uid=uid,
                    gid=gid,
                    network="host" if network == "host" else "none",
                    mounts=[attrs.evolve(m, target=t) for m, t in zip(mounts, targets)],
                    limits=eff_limits,
                )
                text = render(run_cfg, host_layout())
                # 0600: it may hold secrets (env values); the store's walls keep others out too.
                fd = os.open(d / "config", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with open(fd, "w") as fh:
                    fh.write(text)
                meta = {
                    "id": os.urandom(32).hex(),
                    "name": name,
                    "image": image,
                    "image_id": record["id"],
                    "layers": layers,
                    "command": argv,
                    "env": merged_env,
                    "workdir": workdir,
                    "user": user,
                    "uid": uid,
                    "gid": gid,
                    "network": network,
                    "limits": eff_limits.to_dict(),
                    "mounts": [attrs.asdict(m) for m in mounts],
                    "labels": dict(labels or {}),
                    "userns": userns,
                    "created": time.time(),
                    **_log_options(log_max_size, log_max_files),  # raises SpecError
                }
                atomic_write(d / "meta.json", canonical_json(meta))
            except BaseException:
                rmtree(d)
                raise
        return self._load(name)

    def run(
        self,
        image: str,
        command: Command = None,
        *,
        detach: bool = False,
        remove: bool = False,
        check: bool = False,
        timeout: float | None = None,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        limits: Limits | None = None,
        mounts: Sequence[Mount] = (),
        network: str = "none",
        labels: Mapping[str, str] | None = None,
        userns: bool | None = None,
        log_max_size: int | str | None = None,
        log_max_files: int = DEFAULT_LOG_MAX_FILES,
    ) -> Any:
        """Create and start a container.

        ``detach=True`` returns the running ``Container`` (with ``remove=True``
        it removes itself when it exits). ``detach=False`` waits and returns
        ``ExecResult(exit_code, stdout, stderr)`` (the output as its log kept
        it: see ``log_max_size`` in ``create``); ``check=True`` raises
        ContainerError on a non-zero exit; ``timeout`` kills it and raises
        TimeoutExpired. Raises what ``create`` and ``start`` raise; a
        container that could not start is removed.
        """
        if name is None:
            name = "px-" + os.urandom(5).hex()
        validate_container_name(name)  # before its lock file is named after it
        # The container's lock is held from creation until it runs: until then
        # it reads as "created", and a concurrent prune() must not remove it.
        with self._lock(name):
            c = self.create(
                image,
                command,
                name=name,
                env=env,
                workdir=workdir,
                user=user,
                limits=limits,
                mounts=mounts,
                network=network,
                labels=labels,
                userns=userns,
                log_max_size=log_max_size,
                log_max_files=log_max_files,
            )
            meta = c._meta()
            try:
                self._launch(c.name, meta, auto_remove=detach and remove, foreground=not detach)
            except BaseException:
                self._delete(c.name, locked=True, running_ok=True)
                raise
        if detach:
            try:
                return c.reload()
            except ContainerNotFound:
                # remove=True and it has already exited and removed itself.
                c.state = ContainerState.EXITED
                return c
        try:
            try:
                code = c.wait(timeout=timeout)
            except TimeoutExpired:
                try:
                    c.kill("SIGKILL")
                except InvalidState:
                    pass  # it ended between the timeout and the kill
                c.wait(timeout=30)
                raise
            entries = c.log_entries()  # the log, read once for both streams
            result = ExecResult(
                code if code is not None else -1,
                b"".join(e.data for e in entries if e.stream == "stdout"),
                b"".join(e.data for e in entries if e.stream == "stderr"),
            )
            command = meta["command"]
        finally:
            if remove:
                c.remove(force=True)
        if check and result.exit_code != 0:
            raise ContainerError(
                container=c.name,
                exit_status=result.exit_code,
                command=command,
                image=image,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result

    # -- internals -------------------------------------------------------------

    def _launch(
        self, name: str, meta: dict[str, Any], *, auto_remove: bool, foreground: bool = False
    ) -> None:
        """Start the supervisor of container ``name`` (``meta``: its record).

        The store's zygote (see _shim) forks it: a fork of that small process
        holds nothing of the caller's memory and shares the zygote's, and a
        run is ~7 ms quicker than with a fork of the caller (whose pages the
        fork and its exit must map, write-protect and unmap; a notebook's
        kernel has hundreds of MB, and threads). Where no zygote can serve, a
        ``foreground`` run (one the caller waits for) forks the caller, which
        is ~15 ms quicker than a fresh interpreter, the detached one's fallback."""
        d = self._dir(name)
        memory = host_layout().controllers.get("memory")
        oom = ""
        if memory is not None:
            counter = "memory.oom_control" if memory[0] == "v1" else "memory.events"
            oom = os.path.join(memory[1], self._cgroup_dir(name), counter)
        # liblxc's init reports a program it cannot exec only as exit code
        # 255; say what is wrong instead, before anything starts (as Docker does).
        argv = meta["command"]
        if not _executable_found(meta, d / "upper", self._store):
            where = "no such file in the container" if "/" in argv[0] else "not found in $PATH"
            raise LXCError(
                f"cannot start container {name!r}: exec: {argv[0]!r}: {where}",
                operation="start",
                container=name,
                detail=PROGRAM_NOT_FOUND,
            )
        pids = meta["limits"].get("pids")
        if pids is not None and pids < 2:
            # liblxc's init cannot fork the command then, and exits 1 without a
            # word: that would read as the command's exit code.
            raise LimitError(
                f"cannot start container {name!r}: pids limit {pids} is too small to start a container"
                " (liblxc's init and the command are 2 processes); give at least 2, more to exec in it",
                limit="pids",
                value=pids,
            )
        _, inherited = split_env(meta["env"])
        command = _liblxc.execute_argv(
            name, str(self._store.containers_dir), argv, str(d / "lxc.log"), inherit=[k for k, _ in inherited]
        )
        _shim.write_spec(
            str(d),
            auto_remove,
            oom,
            command,
            env=_liblxc.execute_env(inherited),
            # (Containers created before logs rotated have no cap of their own.)
            log_max_size=meta.get("log_max_size", DEFAULT_LOG_MAX_SIZE),
            log_max_files=meta.get("log_max_files", DEFAULT_LOG_MAX_FILES),
        )
        reply = self._zygote_launch(d)
        if reply is not None:
            code, err = (0, b"") if reply == b"ok" else (1, reply)
        elif foreground:
            code, err = _fork_supervisor(str(d))
        else:
            code, err = self._run_shim([str(d)])
        if code != 0 and err.startswith(_shim.START_FAILED.encode()):
            lines = err.decode(errors="replace").strip().splitlines()[1:]
            self._start_failed(name, meta, lines)
        if code != 0:
            raise LXCError(
                f"could not start container {name!r}: {err.decode(errors='replace').strip()}",
                operation="start",
                container=name,
                detail=err.decode(errors="replace"),
            )

    def _start_failed(self, name: str, meta: dict[str, Any], lines: Sequence[str]) -> NoReturn:
        """Raise the error for container ``name``, which liblxc could not start
        (see _shim._start_failure; ``lines``: liblxc's ERROR lines, the cause
        first). StorageError or LimitError when the store's filesystem or a
        limit is to blame, else LXCError; liblxc's reason is in the message,
        and its lines in the LXCError (``detail``) that it comes from."""
        self._remove_cgroups(name)  # left when liblxc had to be killed in its setup
        reason = _lxc_reason(lines[0]) if lines else "no reason given"
        cause = LXCError(
            f"liblxc could not start container {name!r}: {reason}",
            operation="start",
            container=name,
            detail="\n".join(lines),
        )
        root = self._store.root
        if _filesystem_type(self._store.containers_dir) == "overlay":
            raise StorageError(
                f"cannot start container {name!r}: the store root {root} is on overlayfs, which"
                " cannot hold a container's root (an overlay itself); the store root must not be on"
                f" overlayfs: put it on ext4, xfs, btrfs or tmpfs (liblxc: {reason})",
                path=str(root),
            ) from cause
        memory = meta["limits"].get("memory")
        if memory is not None and parse_size(memory) < _MIN_START_MEMORY:
            size = parse_size(memory)
            shown = f"{size} B" if size < 1024 else f"{size / 1024:g} KiB" if size < 1 << 20 else memory
            raise LimitError(
                f"cannot start container {name!r}: memory limit {shown} is too small to start a"
                f" container; give at least a few MB (liblxc: {reason})",
                limit="memory",
                value=size,
            ) from cause
        raise cause

    def _prepare_userns(
        self, d: Path, layers: Sequence[str], ids: tuple[int, int, int, int], keep: Sequence[str]
    ) -> None:
        """The dirs a user-namespaced container's supervisor mounts on (see
        pylxcore.runtime.userns): one per layer, and the overlay's work dir.
        The writable layer's top belongs to the container's root."""
        (d / "work").mkdir()
        (d / "lower").mkdir()
        for i in range(len(layers)):
            (d / "lower" / str(i)).mkdir()
        base = self._store.layer_dir(layers[0]) / "fs"
        os.chmod(d / "upper", stat.S_IMODE(os.stat(base).st_mode))
        os.chown(d / "upper", ids[0], ids[2])
        lowers = [str(self._store.layer_dir(k) / "fs") for k in reversed(layers)]
        write_userns_spec(str(d), ids, lowers, list(keep))

    def _run_shim(self, args: Sequence[str]) -> tuple[int, bytes]:
        """Run the supervisor program (a fresh ``python -I -S`` on its bytecode)
        to its end; (its exit code, its stderr). With posix_spawn: importing
        subprocess would cost the first start ~10 ms. Whatever runs on in the
        background closes the descriptors it inherited (see _shim)."""
        argv = [sys.executable, "-I", "-S", _shim_program(self._store), *args]
        err_r, err_w = os.pipe()
        try:
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                proc = _shim._Process(argv, devnull, devnull, err_w)
            finally:
                os.close(devnull)
        except BaseException:
            os.close(err_r)
            raise
        finally:
            os.close(err_w)
        chunks = []
        try:
            while chunk := os.read(err_r, 65536):
                chunks.append(chunk)
        finally:
            os.close(err_r)
            code = proc.wait()
        return code, b"".join(chunks)

    def _zygote_socket(self) -> str | None:
        """The path of this store's zygote socket (None where it would not fit
        in a socket address: such roots start each supervisor afresh)."""
        program = _shim_program(self._store)
        path = str(self._store.root / "bin" / (Path(program).stem.replace("shim-", "zygote-") + ".sock"))
        return path if len(os.fsencode(path)) < 108 else None

    def _zygote_launch(self, d: Path) -> bytes | None:
        """Ask the store's zygote to start the supervisor of ``d``, starting the
        zygote first when none listens. The supervisor's own answer (b"ok" or
        an error); None when no zygote could take the request."""
        import socket  # noqa: PLC0415

        path = self._zygote_socket()
        if path is None:
            return None
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sent = False
            try:
                sock.settimeout(120)
                try:
                    sock.connect(path)
                except (FileNotFoundError, ConnectionRefusedError):
                    code, err = self._run_shim(["--zygote", path, str(self._store.containers_dir)])
                    if code != 0:
                        log("debug", "no zygote: %s", err.decode(errors="replace").strip())
                        return None
                    continue
                sock.sendall(os.fsencode(d) + b"\n")
                sent = True
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as err:
                if sent:
                    # It may have started the supervisor: never start a second.
                    return f"error: no answer from the supervisor's zygote: {err}".encode()
                log("debug", "the zygote failed us: %s", err)
                return None
            finally:
                sock.close()
            if chunks:
                return b"".join(chunks)
            # Closed unanswered: it was exiting as we came. Nothing was started.
        return None

    def _close_zygote(self) -> None:
        """Ask the store's zygote, if one runs, to exit now (it would after
        a few idle seconds anyway); supervisors it started run on."""
        import socket  # noqa: PLC0415

        path = self._zygote_socket()
        if path is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            try:
                sock.connect(path)
                sock.sendall(_shim.QUIT.encode() + b"\n")
                while sock.recv(4096):
                    pass
            except OSError:
                return
        # It unlinks its socket before it drains and exits; wait for the exit
        # itself, which releases its lock.
        import fcntl  # noqa: PLC0415

        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)

    def _stats(self, name: str) -> Stats:
        layout = host_layout()
        cg = self._cgroup_dir(name)

        def read(controller: str, v1file: str, v2file: str) -> str | None:
            entry = layout.controllers.get(controller)
            if entry is None:
                return None
            path = os.path.join(entry[1], cg, v1file if entry[0] == "v1" else v2file)
            try:
                with open(path) as fh:
                    return fh.read().strip()
            except OSError:
                return None

        def as_int(text: str | None) -> int | None:
            return int(text) if text and text.lstrip("-").isdigit() else None

        cpu: float | None = None
        usage = read("cpuacct", "cpuacct.usage", "cpu.stat")
        if usage and usage.isdigit():
            cpu = int(usage) / 1e9
        elif usage:
            fields = dict(line.split() for line in usage.splitlines() if len(line.split()) == 2)
            cpu = int(fields.get("usage_usec", 0)) / 1e6
        limit = as_int(read("memory", "memory.limit_in_bytes", "memory.max"))
        return Stats(
            memory_bytes=as_int(read("memory", "memory.usage_in_bytes", "memory.current")),
            memory_peak_bytes=as_int(read("memory", "memory.max_usage_in_bytes", "memory.peak")),
            memory_limit_bytes=limit if limit is not None and limit < 1 << 60 else None,
            cpu_seconds=cpu,
            pids=as_int(read("pids", "pids.current", "pids.current")),
        )

    def _delete(self, name: str, *, locked: bool = False, running_ok: bool = False) -> None:
        d = self._dir(name)
        with contextlib.nullcontext() if locked else self._lock(name):
            if not d.exists():
                return
            if not running_ok:
                # Checked again under the lock: another process may have started
                # it since the caller looked (e.g. prune() against run()).
                try:
                    c: Container | None = self._load(name)
                except StorageError:
                    c = None  # an unreadable record: nothing runs from it, remove it
                if c is not None and c.state in (ContainerState.RUNNING, ContainerState.FROZEN):
                    raise InvalidState(
                        f"cannot remove container {name!r}: it is {c.state.value} (started meanwhile)",
                        name=name,
                        state=c.state.value,
                        operation="remove",
                    )
            # A supervisor writes "exited" only after lxc-execute has ended;
            # one never started left nothing running.
            try:
                clean = read_json(d / "state.json").get("status") == "exited"
            except FileNotFoundError:
                clean = not (d / "run.spec").exists()
            except ValueError:
                clean = False
            if not clean:
                # A supervisor that was killed leaves lxc-execute and the payload
                # running with nobody to read their output: end them with it.
                from pylxcore.store.check import _kill_and_reap, _lxc_processes  # noqa: PLC0415

                for pid, argv in _lxc_processes(self._store.containers_dir):
                    if "-n" in argv[:-1] and argv[argv.index("-n") + 1] == name:
                        _kill_and_reap(pid)
            # Rename first: readers see the container or nothing, never half of it.
            doomed = self._store.staging_dir("rm-ctr")
            os.rename(d, doomed / name)
            rmtree(doomed)
            self._store.drop_lock(f"ctr-{name}")  # we hold it: see Store.lock
        # Even after a clean exit: liblxc cannot remove a cgroup that an exec
        # into the container still occupied as it stopped.
        self._remove_cgroups(name)

    def _remove_cgroups(self, name: str) -> None:
        """liblxc removes a container's cgroups when it stops; this sweeps what a
        crash may have left, killing what still lives there (the payload of a
        monitor that was killed)."""
        from pylxcore.store.check import remove_cgroups  # noqa: PLC0415

        remove_cgroups(self._cgroup_dir(name))


__all__ = [
    "Container",
    "ContainerCollection",
    "ContainerState",
    "ExecResult",
    "ExecStream",
    "LogEntry",
    "Stats",
]
