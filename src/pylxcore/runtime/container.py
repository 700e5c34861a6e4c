"""The Container handle: a container's state, lifecycle, exec, logs and resource use.

A handle does no I/O on attribute access: ``state``, ``exit_code`` and
``oom_killed`` are as of its last ``reload()``. The supervisor (see
pylxcore.supervisor) outlives the Python process that started the
container, so a later ``Engine()`` in another process finds it, its logs and
its exit code.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence, overload

import attrs

from pylxcore.errors import ContainerNotFound, InvalidState, TimeoutExpired
from pylxcore.procs import process_start_time
from pylxcore.runtime.cgroups import Stats, frozen, read_stats
from pylxcore.runtime.container_exec import ContainerExec
from pylxcore.runtime.events import record_event
from pylxcore.runtime.files import ContainerFiles
from pylxcore.runtime.signals import signal_number
from pylxcore.runtime.state import ContainerState, StateRecord, watch_state
from pylxcore.spec import Limits
from pylxcore.spec.sizes import human_size
from pylxcore.store import read_json
from pylxcore.store.records import ContainerRecord
from pylxcore.supervisor.lxcexec import find_pids
from pylxcore.supervisor.policy import STOP_MARK
from pylxcore.supervisor.state import STATE_FILE

if TYPE_CHECKING:
    from pylxcore.runtime.attach import AttachStream
    from pylxcore.runtime.containers import ContainerCollection
    from pylxcore.runtime.logs import LogEntry


def published(ports: Sequence[Sequence[Any]]) -> dict[str, list[tuple[str, int]]]:
    """A container's published ports as its record keeps them
    ([["80/tcp", "0.0.0.0", 8080], …]), as docker-py shows them."""
    out: dict[str, list[tuple[str, int]]] = {}
    for cport, ip, port in ports:
        out.setdefault(cport, []).append((ip, port))
    return out


@attrs.define(eq=False)
class Container(ContainerFiles, ContainerExec):
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
    # Fixed at creation (``networks.connect`` aside): {"80/tcp": [("0.0.0.0", 8080)]}.
    ports: dict[str, list[tuple[str, int]]] = attrs.field(factory=dict, repr=False)
    ip_address: str | None = attrs.field(default=None, repr=False)  # on its first network
    restart_count: int = attrs.field(default=0, repr=False)  # restarts by its policy, this start
    health: str | None = None  # "starting", "healthy", "unhealthy"; None: no healthcheck
    # Fixed at creation, unlike the name: its dir, lock, cgroups (see pylxcore.runtime.names).
    key: str = attrs.field(default=attrs.Factory(lambda self: self.name, takes_self=True), repr=False)

    # -- reading -------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self._collection._dir(self.key)

    def _meta(self) -> ContainerRecord:
        """What it was created with (its name as of now: the handle follows
        a rename by another process). Raises ContainerNotFound, StorageError."""
        try:
            meta = ContainerRecord.read(self.dir / "meta.json")
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.name!r} no longer exists", name=self.name) from None
        self.name = meta.name
        return meta

    def _raw_state(self) -> StateRecord | None:
        """What its supervisor last wrote; None before its first start.
        Raises ContainerNotFound, StorageError (a newer pylxcore's state)."""
        try:
            return StateRecord.read(self.dir / STATE_FILE)
        except FileNotFoundError:
            raise ContainerNotFound(f"container {self.name!r} no longer exists", name=self.name) from None

    def reload(self) -> Container:
        """Read the container's state from disk. Raises ContainerNotFound."""
        st = self._raw_state()
        if st is None:
            self.state = ContainerState.CREATED
            self.exit_code, self.oom_killed = None, False
            self.started_at = self.finished_at = self.health = None
            self.restart_count = 0
            return self
        # Ask whether the supervisor lives once only: asking again could see
        # it exit and mistake a clean end for a killed supervisor.
        alive = st.status == "running" and st.supervisor_alive()
        if st.status == "running" and not alive:
            # Read again: the supervisor may have written its last word and
            # exited between our read and the liveness check.
            st = self._raw_state() or st
        self.started_at = st.started_at
        self.restart_count, self.health = st.restart_count, st.health
        if st.status == "restarting" and st.supervisor_alive():
            self.state = ContainerState.RESTARTING
            self.exit_code, self.oom_killed = st.exit_code, st.oom_killed
            self.finished_at = st.finished_at
        elif st.status == "running" and alive:
            paused = frozen(self._collection._cgroup_dir(self.key))
            self.state = ContainerState.FROZEN if paused else ContainerState.RUNNING
            self.exit_code, self.oom_killed, self.finished_at = None, False, None
        elif st.status == "running":
            # The supervisor died without its last word (it was killed): the
            # exit code is lost; the state is exited all the same.
            self.state = ContainerState.EXITED
            self.exit_code, self.oom_killed, self.finished_at = None, False, None
        else:
            self.state = ContainerState.EXITED
            self.exit_code = st.exit_code
            self.oom_killed = st.oom_killed
            self.finished_at = st.finished_at
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
        with self._collection._lock(self.key):
            self._expect("start", ContainerState.CREATED, ContainerState.EXITED)
            self._collection._launch(self.key, self._meta(), auto_remove=False)
        return self.reload()

    def _pids(self) -> tuple[int | None, int | None]:
        """(init pid, main process pid) on the host, from the supervisor's records."""
        st = self._raw_state()
        lxc_pid = st.lxc_pid if st is not None else None
        if st is None or not lxc_pid or not st.supervisor_alive():
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
        self._stopped_by_user("kill", signal=str(signum))
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

    def stop(self, timeout: float | None = None) -> int | None:
        """Its stop signal (``stop_signal`` at creation, else the image's,
        else SIGTERM) to the main process, SIGKILL after ``timeout`` seconds
        (None: its ``stop_timeout``, else 10); returns the exit code. Raises
        InvalidState when it is not running."""
        self._expect("stop", ContainerState.RUNNING, ContainerState.FROZEN, ContainerState.RESTARTING)
        meta = self._meta()
        signum = signal_number(meta.extra.get("stop_signal") or "SIGTERM")
        if timeout is None:
            timeout = float(meta.extra.get("stop_timeout", 10))
        self._stopped_by_user("kill", signal=str(signum))
        if self.state is ContainerState.FROZEN:
            self.unfreeze()
        code = self._stop(timeout, signum)
        record_event(self._collection._store, self, "stop")
        return code

    def _stopped_by_user(self, action: str, **attributes: str) -> None:
        """Tell the supervisor that the end to come is the user's, no failure
        to restart from (see pylxcore.supervisor.policy.STOP_MARK); record ``action``."""
        with contextlib.suppress(FileNotFoundError):
            (self.dir / STOP_MARK).touch(mode=0o600)
        record_event(self._collection._store, self, action, **attributes)

    def _stop(self, timeout: float, signum: int = signal.SIGTERM) -> int | None:
        init, main = self._pids()
        if main or init:
            try:
                os.kill(main or init or 0, signum)
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

    def restart(self, timeout: float | None = None) -> Container:
        """Stop (if running) and start again; the writable layer is kept."""
        if self.status() in ("running", "paused", "restarting"):
            self.stop(timeout=timeout)
        self.start()
        record_event(self._collection._store, self, "restart")
        return self

    def freeze(self) -> None:
        """Freeze every process (``docker pause``). Raises InvalidState, LXCError."""
        self._expect("freeze", ContainerState.RUNNING)
        self._collection._handle(self.key).freeze()
        self.reload()

    def unfreeze(self) -> None:
        """Thaw a frozen container. Raises InvalidState, LXCError."""
        self._expect("unfreeze", ContainerState.FROZEN)
        self._collection._handle(self.key).unfreeze()
        self.reload()

    pause = freeze
    unpause = unfreeze

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the main process exits; return its exit code (None if the
        supervisor was killed and the code is lost). With a restart policy:
        until it ends for good (the policy gives up, or it is stopped).
        Raises TimeoutExpired, InvalidState (never started), ContainerNotFound
        (removed meanwhile: ``remove=True``)."""
        self.reload()
        if self.state is ContainerState.CREATED:
            raise InvalidState(
                f"cannot wait for container {self.name!r}: it was never started",
                name=self.name,
                state=self.state.value,
                operation="wait",
            )
        st = self._raw_state()
        if self.state is not ContainerState.EXITED and st is not None and st.shim_pid is not None:
            pid = st.shim_pid
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                pidfd = None
            if pidfd is not None:
                try:
                    # The pid may have been reused between reading and opening.
                    if process_start_time(pid) == st.shim_start:
                        self._wait_for_end(pidfd, timeout)
                finally:
                    os.close(pidfd)
            self.reload()
        return self.exit_code

    def _wait_for_end(self, pidfd: int, timeout: float | None) -> None:
        """Wait until the supervisor (``pidfd``) exits, or its state says the
        end for good. Raises TimeoutExpired, ContainerNotFound."""
        watch = -1
        if self._meta().attachable:
            # Its supervisor outlives a short last run by up to two seconds,
            # for a caller that attaches late (pylxcore.supervisor.attachsock):
            # the state, written before, says the end at once.
            with contextlib.suppress(OSError):
                watch = watch_state(self.dir)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while watch < 0 or self.reload().state is not ContainerState.EXITED:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([pidfd] + ([watch] if watch >= 0 else []), [], [], left)
                if pidfd in ready:
                    return
                if not ready:
                    raise TimeoutExpired(
                        f"container {self.name!r} still running after {timeout}s",
                        operation="wait",
                        timeout=timeout,
                    )
                with contextlib.suppress(BlockingIOError):
                    while os.read(watch, 4096):
                        pass
        finally:
            if watch >= 0:
                os.close(watch)

    def remove(self, *, force: bool = False) -> None:
        """Delete the container and its writable layer. A running container needs
        ``force=True`` (it is killed). Raises InvalidState, ContainerNotFound."""
        self.reload()
        if self.state is ContainerState.RESTARTING and force:
            self.stop(timeout=0)
        elif self.state in (ContainerState.RUNNING, ContainerState.FROZEN, ContainerState.RESTARTING):
            if not force:
                raise InvalidState(
                    f"cannot remove container {self.name!r}: it is {self.state.value}"
                    " (stop it or use force=True)",
                    name=self.name,
                    state=self.state.value,
                    operation="remove",
                )
            try:
                self.kill("SIGKILL")
                self.wait(timeout=30)
            except ContainerNotFound:
                return  # run with auto-removal: its supervisor removed it as it ended
        self._collection._delete(self.key)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove(force=True)
        except ContainerNotFound:
            pass

    def attach(self) -> AttachStream:
        """Reach the main process of a container created with ``tty`` or
        ``stdin``, through its supervisor (``docker attach``): a stream of
        its output, its input and its terminal's size (see
        pylxcore.runtime.attach.AttachStream). Several may attach at once;
        leaving one leaves the container running. Raises InvalidState (not
        running, or created without tty and stdin)."""
        from pylxcore.runtime.attach import attach  # (sockets load on first use)

        return attach(self)

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
                running=lambda: self.status() in ("running", "paused", "restarting"),
                name=self.name,
            )
        entries = [e for e in self.log_entries(since=since) if e.stream in streams]
        return b"".join(render(last_lines(entries, tail), timestamps))

    # -- resources -------------------------------------------------------------

    @overload
    def stats(self, *, stream: Literal[False] = False) -> Stats: ...

    @overload
    def stats(self, *, stream: Literal[True], interval: float = 1.0) -> Iterator[dict[str, Any]]: ...

    def stats(self, *, stream: bool = False, interval: float = 1.0) -> Stats | Iterator[dict[str, Any]]:
        """Memory (current, peak, limit), CPU seconds and pid count from the
        container's cgroups. With ``stream=True``: docker-py's
        ``stats(decode=True)`` documents instead (``cpu_stats``,
        ``precpu_stats``, ``memory_stats``, ``pids_stats``), one every
        ``interval`` seconds until it stops (see
        pylxcore.runtime.statstream; ``cpu_percent`` gives docker's CPU %).
        Raises InvalidState when it is not running."""
        if stream:
            from pylxcore.runtime.statstream import stream as stats_stream

            self._expect("read stats of", ContainerState.RUNNING, ContainerState.FROZEN)
            return stats_stream(self, interval)
        self._expect("read stats of", ContainerState.RUNNING, ContainerState.FROZEN)
        return read_stats(self._collection._cgroup_dir(self.key))

    def update(
        self, limits: Limits | Mapping[str, object] | None = None, *, restart: str | None = None
    ) -> Limits:
        """Change its limits (the fields ``limits`` sets; a Limits or a mapping
        like ``{"memory": "128M"}``; ``pids=-1`` removes that limit), at once
        when it runs, and for every later start, and its ``restart`` policy
        (``docker update --restart``: its supervisor follows it from the main
        process's next end). Returns the limits it has now. Raises SpecError,
        LimitError, InvalidState, ContainerNotFound (see
        pylxcore.runtime.update.update)."""
        from pylxcore.runtime.update import update

        return update(self, limits, restart=restart)

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
            "restart_policy": meta.restart,
            "restart_count": self.restart_count,
            "health": self._health_record(),
            "created": meta.created,
            "command": list(meta.command),
            "env": dict(meta.env),
            "workdir": meta.workdir,
            "user": meta.user,
            "network": meta.network,
            "networks": meta.extra.get("networks", {}),
            "ports": published(meta.extra.get("ports", [])),
            "hostname": meta.extra.get("hostname"),
            "limits": meta.limits.to_dict(),
            "mounts": [attrs.asdict(m) for m in meta.mounts],
            "labels": dict(meta.labels),
            "userns": meta.userns,
            "tty": bool(meta.extra.get("tty")),  # created with a terminal, and its stdin open
            "open_stdin": bool(meta.extra.get("open_stdin")),
            "dir": str(self.dir),
        }

    def _health_record(self) -> dict[str, Any] | None:
        """The healthcheck's status, failing streak and last results (None: it has none)."""
        if self.health is None:
            return None
        try:
            data: dict[str, Any] = read_json(self.dir / "health.json")
        except (FileNotFoundError, ValueError):
            data = {}
        return {
            "status": self.health,
            "failing_streak": data.get("failing_streak", 0),
            "log": data.get("log", []),  # the last 5: start, end, exit_code, output
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
            ("command", " ".join(meta.command)),
            ("limits", ", ".join(f"{k}={v}" for k, v in meta.limits.to_dict().items()) or "none"),
            ("network", meta.network),
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
