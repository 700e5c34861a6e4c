"""The Container handle: a container's state, lifecycle, exec, logs and resource use.

A handle does no I/O on attribute access: ``state``, ``exit_code`` and
``oom_killed`` are as of its last ``reload()``. The supervisor (see
pylxcore.supervisor) outlives the Python process that started the
container, so a later ``Engine()`` in another process finds it, its logs and
its exit code.
"""

from __future__ import annotations

import enum
import os
import select
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import attrs

from pylxcore.errors import ContainerNotFound, InvalidState, LimitError, LXCError, TimeoutExpired
from pylxcore.procs import process_start_time
from pylxcore.runtime.cgroups import Stats, frozen, read_stats
from pylxcore.runtime.exec import ExecResult, ExecStream
from pylxcore.runtime.liblxc import NOT_RUNNING
from pylxcore.runtime.lxcconfig import DEFAULT_PATH
from pylxcore.runtime.programs import command_argv
from pylxcore.runtime.rootfs import LayerStack
from pylxcore.runtime.signals import signal_number
from pylxcore.runtime.users import lookup_user
from pylxcore.spec.sizes import human_size
from pylxcore.store import read_json
from pylxcore.supervisor.lxcexec import find_pids

if TYPE_CHECKING:
    from pylxcore.runtime.containers import ContainerCollection
    from pylxcore.runtime.logs import LogEntry


class ContainerState(str, enum.Enum):
    """The life stages of a container (the values read like ``docker ps``)."""

    CREATED = "created"
    RUNNING = "running"
    FROZEN = "paused"
    EXITED = "exited"


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
    created: float = attrs.field(repr=False)  # unix time; with command, fixed at creation
    command: tuple[str, ...] = attrs.field(repr=False)  # the main process's argv
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
        return pid is not None and process_start_time(int(pid)) == st.get("shim_start")

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
            paused = frozen(self._collection._cgroup_dir(self.name))
            self.state = ContainerState.FROZEN if paused else ContainerState.RUNNING
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
        init, main, _ = find_pids(int(lxc_pid))
        return init, main

    def kill(self, signal: int | str = "SIGKILL") -> None:
        """Send ``signal`` (a name like "SIGTERM" or "term", or a number) to the
        main process (like ``docker kill``). Raises SpecError (no such signal),
        InvalidState (not running)."""
        signum = signal_number(signal)
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
                os.kill(main or init or 0, signal.SIGTERM)
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
                os.kill(main, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                return self.wait(timeout=5)
            except TimeoutExpired:
                init, _ = self._pids()
        if init:
            try:
                os.kill(init, signal.SIGKILL)
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
                    if process_start_time(pid) == st.get("shim_start"):
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
        argv = command_argv(cmd, None)
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
                uid, gid = lookup_user(stack, user)
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
            if limit is not None and (read_stats(self._collection._cgroup_dir(self.name)).pids or 0) >= limit:
                raise LimitError(
                    f"cannot exec in container {self.name!r}: it has reached its pids limit ({limit}),"
                    " so no process can start in it until some of its processes exit",
                    limit="pids",
                    value=limit,
                ) from None  # (liblxc's own words, "not running", would mislead)
            # liblxc finding no running init means it is on its way out even
            # when its monitor and our supervisor have not noticed yet.
            stopping = err.detail == NOT_RUNNING
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
        from pylxcore.runtime.logs import read_log  # (the log's modules load on first use)

        return read_log(self.dir, since=since)

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
        from pylxcore.runtime.logs import follow_log, last_lines, render

        streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
        if follow:
            return follow_log(
                self.dir,
                streams,
                tail,
                since,
                timestamps,
                timeout,
                running=lambda: self.status() in ("running", "paused"),
                name=self.name,
            )
        entries = [e for e in self.log_entries(since=since) if e.stream in streams]
        return b"".join(render(last_lines(entries, tail), timestamps))

    # -- resources -------------------------------------------------------------

    def stats(self) -> Stats:
        """Memory (current, peak, limit), CPU seconds and pid count from the
        container's cgroups. Raises InvalidState when it is not running."""
        self._expect("read stats of", ContainerState.RUNNING, ContainerState.FROZEN)
        return read_stats(self._collection._cgroup_dir(self.name))

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
            rows.append(("memory", human_size(s.memory_bytes or 0, binary=True)))
            rows.append(("cpu", f"{(s.cpu_seconds or 0):.2f} s"))
            rows.append(("pids", str(s.pids)))
        import html  # (deferred: only Jupyter needs it)

        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        return f"<table>{body}</table>"
