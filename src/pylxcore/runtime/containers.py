"""``engine.containers``: find, list, create, start and remove containers.

What a container is on disk is pylxcore.runtime.provision's to say; the
handle on one is pylxcore.runtime.container's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NoReturn, Sequence

from pylxcore.errors import (
    ContainerError,
    ContainerNotFound,
    InvalidState,
    LimitError,
    LXCError,
    SpecError,
    StorageError,
    TimeoutExpired,
)
from pylxcore.runtime import liblxc
from pylxcore.runtime.cgroups import cgroup_name, remove_cgroups
from pylxcore.runtime.container import Container, ContainerState
from pylxcore.runtime.exec import ExecResult
from pylxcore.runtime.failures import raise_start_failure
from pylxcore.runtime.launch import start_supervisor
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.lxcconfig import split_env
from pylxcore.runtime.processes import kill_and_reap, lxc_processes
from pylxcore.runtime.programs import PROGRAM_NOT_FOUND, Command, executable_found
from pylxcore.runtime.provision import DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, provision
from pylxcore.spec import Limits, Mount, validate_container_name
from pylxcore.store import read_json, rmtree
from pylxcore.supervisor.protocol import OK, start_failure_lines
from pylxcore.supervisor.runspec import RunSpec

if TYPE_CHECKING:
    from pylxcore.engine import Engine


class ContainerCollection:
    """``engine.containers``: create, run, get and list containers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store

    # -- paths and helpers -----------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self._store.containers_dir / name

    def _cgroup_dir(self, name: str) -> str:
        return cgroup_name(self._store.root_id, name)

    def _lock(self, name: str) -> Any:
        return self._store.lock(f"ctr-{name}")

    def _handle(self, name: str) -> liblxc.Handle:
        return liblxc.Handle(name, str(self._store.containers_dir))

    def _load(self, name: str) -> Container:
        try:
            meta = read_json(self._dir(name) / "meta.json")
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(f"no container {name!r} in {self._store.root}", name=name) from None
        except ValueError as err:
            raise StorageError(
                f"container {name!r} has an unreadable record: {err}", path=str(self._dir(name))
            ) from err
        return self._from_meta(meta)

    def _from_meta(self, meta: dict[str, Any]) -> Container:
        """A handle on the container whose record is ``meta``, its state read."""
        return Container(
            self, meta["name"], meta["id"], meta["image"], meta["image_id"],
            created=meta["created"], command=tuple(meta["command"]),
        ).reload()

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
                c = self._from_meta(m)  # (the record just read: each is read once)
            except ContainerNotFound:
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
        if name is None:
            name = "px-" + os.urandom(5).hex()
        provision(
            self._store,
            record,
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
            userns=self._engine.userns if userns is None else userns,
            log_max_size=log_max_size,
            log_max_files=log_max_files,
        )
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
                self._launch(c.name, meta, auto_remove=detach and remove)
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

    def _launch(self, name: str, meta: dict[str, Any], *, auto_remove: bool) -> None:
        """Start container ``name`` (``meta``: its record): write what its
        supervisor runs, and start the supervisor (see pylxcore.runtime.launch).
        Raises LXCError, LimitError or StorageError when it cannot start."""
        d = self._dir(name)
        memory = host_layout().controllers.get("memory")
        oom = ""
        if memory is not None:
            counter = "memory.oom_control" if memory[0] == "v1" else "memory.events"
            oom = os.path.join(memory[1], self._cgroup_dir(name), counter)
        # liblxc's init reports a program it cannot exec only as exit code
        # 255; say what is wrong instead, before anything starts (as Docker does).
        argv = meta["command"]
        if not executable_found(meta, d / "upper", self._store):
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
        command = liblxc.execute_argv(
            name, str(self._store.containers_dir), argv, str(d / "lxc.log"), inherit=[k for k, _ in inherited]
        )
        RunSpec(
            command,
            env=liblxc.execute_env(inherited),
            auto_remove=auto_remove,
            oom_path=oom,
            # (Containers created before logs rotated have no cap of their own.)
            log_max_size=meta.get("log_max_size", DEFAULT_LOG_MAX_SIZE),
            log_max_files=meta.get("log_max_files", DEFAULT_LOG_MAX_FILES),
        ).write(str(d))
        try:
            answer = start_supervisor(self._store.containers_dir, d)
        except OSError as err:
            answer = f"error: cannot start a supervisor: {err}".encode()
        if answer == OK:
            return
        lines = start_failure_lines(answer)
        if lines is not None:
            self._start_failed(name, meta, lines)
        raise LXCError(
            f"could not start container {name!r}: {answer.decode(errors='replace').strip()}",
            operation="start",
            container=name,
            detail=answer.decode(errors="replace"),
        )

    def _start_failed(self, name: str, meta: dict[str, Any], lines: Sequence[str]) -> NoReturn:
        """Raise the error for container ``name``, which liblxc could not start
        (see pylxcore.runtime.failures), once its leftover cgroups are gone."""
        self._remove_cgroups(name)  # left when liblxc had to be killed in its setup
        raise_start_failure(
            name, meta["limits"], lines, root=self._store.root, containers_dir=self._store.containers_dir
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
                for pid, argv in lxc_processes(self._store.containers_dir):
                    if "-n" in argv[:-1] and argv[argv.index("-n") + 1] == name:
                        kill_and_reap(pid)
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
        remove_cgroups(self._cgroup_dir(name))


__all__ = ["ContainerCollection"]
