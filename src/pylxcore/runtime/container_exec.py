"""A container's exec: the methods of Container that run a command in it
(``exec``, ``exec_stream``), kept here to keep runtime.container small. The
stream itself is pylxcore.runtime.exec's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence, cast

from pylxcore.errors import InvalidState, LimitError, LXCError
from pylxcore.runtime.cgroups import read_stats
from pylxcore.runtime.events import record_event
from pylxcore.runtime.exec import ExecResult, ExecStream, container_pty
from pylxcore.runtime.liblxc import NOT_RUNNING
from pylxcore.runtime.lxcconfig import DEFAULT_PATH
from pylxcore.runtime.programs import command_argv
from pylxcore.runtime.rootfs import LayerStack
from pylxcore.runtime.state import ContainerState
from pylxcore.runtime.users import lookup_user

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


class ContainerExec:
    """Container's methods that run commands in it (a mixin: Container is the only user)."""

    def exec_stream(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        stdin: bytes | bool | None = None,
        timeout: float | None = None,
        tty: bool = False,
    ) -> ExecStream:
        """Run ``cmd`` in the running container; iterate the returned stream for
        ``(stream_name, bytes)`` chunks as they come, then read ``.exit_code``.
        ``stdin=True`` keeps its input open (``stream.write()``); ``tty=True``
        runs it on a terminal of the container's (``docker exec -t``; TERM
        defaults to xterm). Raises InvalidState (not running), SpecError (bad
        command or user), LimitError (the container is at its pids limit: no
        process can start in it), LXCError."""
        c = cast("Container", self)
        argv = command_argv(cmd, None)
        c._expect("exec in", ContainerState.RUNNING)
        meta = c._meta()
        handle = c._collection._handle(c.key)
        try:
            # No liblxc state poll here: the supervisor reports a container
            # started only once its main process runs, so attach can go ahead.
            if user is None:
                uid, gid = meta.uid, meta.gid
            else:
                init, _ = c._pids()
                root = Path(f"/proc/{init}/root") if init else None
                stack = LayerStack([root] if root else [])
                uid, gid = lookup_user(stack, user)
            host = meta.extra.get("hostname") or c.name  # (a rename keeps the host name)
            full_env = {"PATH": DEFAULT_PATH, "HOSTNAME": host, "HOME": "/root" if uid == 0 else "/"}
            full_env.update(meta.env)
            if tty:
                full_env.setdefault("TERM", "xterm")
            full_env.update(env or {})
            pty = c._pty() if tty else None
            # Docker's form: the command line in the action, an id of the exec's own.
            action = f"exec_start: {' '.join(argv)}"
            record_event(c._collection._store, c, action, execID=os.urandom(32).hex())
            return ExecStream(handle, argv, full_env, workdir or meta.workdir, uid, gid, stdin, timeout, pty)
        except LXCError as err:
            # Stopped or removed by another process meanwhile: report that
            # (InvalidState, ContainerNotFound) rather than liblxc's failure.
            c._expect("exec in", ContainerState.RUNNING)
            # liblxc reports a fork that fails inside the container as it does
            # a container that is going (NOT_RUNNING): tell the pids limit first.
            limit = meta.limits.pids
            if limit is not None and (read_stats(c._collection._cgroup_dir(c.key)).pids or 0) >= limit:
                raise LimitError(
                    f"cannot exec in container {c.name!r}: it has reached its pids limit ({limit}),"
                    " so no process can start in it until some of its processes exit",
                    limit="pids",
                    value=limit,
                ) from None  # (liblxc's own words, "not running", would mislead)
            # liblxc finding no running init means it is on its way out even
            # when its monitor and our supervisor have not noticed yet.
            stopping = err.detail == NOT_RUNNING
            if stopping or c._collection._handle(c.key).state() not in ("RUNNING", "FROZEN"):
                raise InvalidState(
                    f"cannot exec in container {c.name!r}: it is stopping",
                    name=c.name,
                    state="stopping",
                    operation="exec in",
                ) from None
            raise

    def _pty(self) -> tuple[int, int]:
        """A new terminal of the container's own (see container_pty). Raises LXCError."""
        c = cast("Container", self)
        init, _ = c._pids()
        try:
            if init is None:
                raise OSError("its init has exited")
            return container_pty(f"/proc/{init}/root")
        except OSError as err:
            raise LXCError(
                f"cannot open a terminal in container {c.name!r}: {err}",
                operation="exec",
                container=c.name,
            ) from err

    def exec(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        tty: bool = False,
    ) -> ExecResult:
        """Run ``cmd`` in the running container and wait: ``ExecResult(exit_code,
        stdout, stderr)`` (with ``tty``, all its output in stdout). A timeout
        kills the command and raises TimeoutExpired. Raises InvalidState,
        SpecError, LXCError."""
        c = cast("Container", self)
        if isinstance(stdin, bool):
            raise TypeError("exec() waits for the command: give stdin as bytes (or use exec_stream)")
        stream = c.exec_stream(
            cmd, env=env, workdir=workdir, user=user, stdin=stdin, timeout=timeout, tty=tty
        )
        out: list[bytes] = []
        err: list[bytes] = []
        for name, chunk in stream:
            (out if name == "stdout" else err).append(chunk)
        assert stream.exit_code is not None
        return ExecResult(stream.exit_code, b"".join(out), b"".join(err))
