"""``engine.containers``: find, list, create, start and remove containers.

What a container is on disk is pylxcore.runtime.provision's to say; the
handle on one is pylxcore.runtime.container's.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pylxcore._log import log
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
from pylxcore.notebook import ContainerList
from pylxcore.runtime import liblxc, names
from pylxcore.runtime.cgroups import cgroup_name, remove_cgroups
from pylxcore.runtime.container import Container, published
from pylxcore.runtime.events import record_event
from pylxcore.runtime.exec import ExecResult
from pylxcore.runtime.programs import (
    Command,
)
from pylxcore.runtime.provision import DEFAULT_LOG_MAX_FILES, provision
from pylxcore.runtime.removal import delete
from pylxcore.runtime.starting import launch
from pylxcore.runtime.state import ContainerState
from pylxcore.spec import Limits, Mount, validate, validate_container_name
from pylxcore.spec.healthcheck import Healthcheck
from pylxcore.store.records import ContainerRecord, ImageRecord
from pylxcore.supervisor.policy import STOP_MARK

if TYPE_CHECKING:
    from pylxcore.engine import Engine
    from pylxcore.images import BuiltImage
    from pylxcore.network.attachment import Attachment


class ContainerCollection:
    """``engine.containers``: create, run, get and list containers."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._store = engine.store
        self._held = threading.local()  # .claims: the names this thread holds for a create (see _claim)

    # -- paths and helpers -----------------------------------------------------
    # A container has a key, fixed at creation, and a name, which rename
    # changes (see pylxcore.runtime.names): the helpers below take its key;
    # a name becomes a key here, in _record, and nowhere else.

    def _dir(self, key: str) -> Path:
        return self._store.containers_dir / key

    def _cgroup_dir(self, key: str) -> str:
        return cgroup_name(self._store.root_id, key)

    def _lock(self, key: str) -> Any:
        return self._store.lock(f"ctr-{key}")

    def _handle(self, key: str) -> liblxc.Handle:
        return liblxc.Handle(key, str(self._store.containers_dir))

    def _record(self, name: str) -> ContainerRecord:
        """The record of the container named ``name``. Raises
        ContainerNotFound, StorageError (an unreadable record)."""
        try:
            validate_container_name(name)
        except SpecError:
            raise ContainerNotFound(f"no container {name!r} in {self._store.root}", name=name) from None
        found = names.find(self._store, name)
        if found is None:
            raise ContainerNotFound(f"no container {name!r} in {self._store.root}", name=name)
        return found

    def _load(self, name: str) -> Container:
        """Raises ContainerNotFound, StorageError (an unreadable record)."""
        return self._from_meta(self._record(name))

    def _claim(self, name: str) -> AbstractContextManager[str]:
        """Hold the name ``name`` for a new container, and the lock of the key
        it gets (yielded), until the end of the block (see
        pylxcore.runtime.names.claim). Raises Conflict (taken), SpecError."""
        if not hasattr(self._held, "claims"):
            self._held.claims = {}
        claims: dict[str, str] = self._held.claims
        return names.claim(self._store, name, claims)

    def _from_meta(self, meta: ContainerRecord) -> Container:
        """A handle on the container whose record is ``meta``, its state read."""
        networks = meta.extra.get("networks") or {}
        return Container(
            self, meta.name, meta.id, meta.image, meta.image_id,
            created=meta.created, command=meta.command,
            ports=published(meta.extra.get("ports", [])),
            ip_address=next((n["ip"] for n in networks.values()), None),
            key=meta.key,
        ).reload()

    def _metas(self) -> list[ContainerRecord]:
        """The records of every container. Raises StorageError (one unreadable:
        what uses these, prune among them, must not go on without it)."""
        out = []
        for d in self._store.containers_dir.iterdir():
            try:
                out.append(ContainerRecord.read(d / "meta.json"))
            except OSError:
                continue  # not a container (any more), or one still being made
        return out

    def _layers_in_use(self) -> set[str]:
        return {k for m in self._metas() for k in m.layers}

    def _images_in_use(self) -> set[str]:
        return {m.image_id for m in self._metas()}

    def _users_of(self, image_id: str) -> list[str]:
        return [m.name for m in self._metas() if m.image_id == image_id]

    # -- public ----------------------------------------------------------------

    def get(self, name: str) -> Container:
        """The container named ``name`` (or with that id or id prefix). Raises ContainerNotFound."""
        if not isinstance(name, str):
            raise TypeError(f"a container name is a str, not {type(name).__name__}")
        try:
            return self._load(name)
        except ContainerNotFound:
            pass
        if len(name) >= 4:
            matches = [m for m in self._metas() if m.id.startswith(name)]
            if len(matches) == 1:
                return self._from_meta(matches[0])
        raise ContainerNotFound(f"no container {name!r} in {self._store.root}", name=name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ContainerNotFound:
            return False
        return True

    def list(self, *, all: bool = False) -> ContainerList:  # noqa: A002  (docker-py's name)
        """Running (frozen, restarting) containers, or every container with
        ``all=True``; oldest first. A list, shown as a table in Jupyter."""
        out = ContainerList()
        metas = sorted(self._metas(), key=lambda m: m.created)
        for m in metas:
            try:
                c = self._from_meta(m)  # (the record just read: each is read once)
            except ContainerNotFound:
                continue  # removed while we looked
            if all or c.state in (ContainerState.RUNNING, ContainerState.FROZEN, ContainerState.RESTARTING):
                out.append(c)
        return out

    def start_restartable(self) -> Sequence[Container]:
        """Start what Docker's daemon brings back when it starts: the stopped
        containers whose restart policy is "always", or "unless-stopped"
        unless their user stopped them. For a host's boot (``pylxcore start
        --all-restartable``, from a systemd unit: see docs/containers.md).
        Returns those started; one that cannot start is skipped, its error
        logged. Raises StorageError."""
        started = []
        for c in self.list(all=True):
            try:
                policy = c._meta().restart
                if c.state is not ContainerState.EXITED or policy not in ("always", "unless-stopped"):
                    continue
                if policy == "unless-stopped" and (c.dir / STOP_MARK).exists():
                    continue
                started.append(c.start())
            except (ContainerNotFound, InvalidState):
                continue  # removed or started by another process meanwhile
            except (LXCError, LimitError, StorageError) as err:
                log("warning", "cannot start container %s: %s", c.name, err)
        return started

    def create(
        self,
        image: str | BuiltImage,
        command: Command = None,
        *,
        entrypoint: Command = None,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        limits: Limits | None = None,
        mounts: Sequence[Mount] = (),
        network: str | None = None,
        ports: Mapping[str, Any] | None = None,
        hostname: str | None = None,
        aliases: Sequence[str] = (),
        ip: str | None = None,
        dns: Sequence[str] | None = None,
        dns_search: Sequence[str] | None = None,
        dns_opt: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        userns: bool | None = None,
        log_max_size: int | str | None = None,
        log_max_files: int = DEFAULT_LOG_MAX_FILES,
        restart: str | None = None,
        healthcheck: Healthcheck | None = None,
        tty: bool = False,
        stdin: bool = False,
        stop_signal: str | None = None,
        stop_timeout: float | None = None,
        read_only: bool = False,
        tmpfs: Mapping[str, str] | None = None,
        console_size: tuple[int, int] | None = None,
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

        It runs the image's entrypoint followed by ``command``, else by the
        image's cmd, as Docker does. ``entrypoint`` replaces the image's
        entrypoint and drops its cmd (``docker run --entrypoint``): a string
        is one program, a list an argv, ``""`` none at all.

        ``tty=True`` runs its main process on a terminal of the container's
        (TERM defaults to xterm), ``stdin=True`` keeps its stdin open (``docker
        run -t``, ``-i``): its supervisor holds them, and ``Container.attach()``
        reaches them, as often as wanted and by several callers at once.
        ``console_size`` (rows, columns) is the terminal's size at each start
        (default 24 x 80), as Docker's ConsoleSize.

        ``stop_signal`` (else the image's StopSignal, else SIGTERM) is what
        ``stop()`` sends first, ``stop_timeout`` (seconds; default 10) how
        long it waits before SIGKILL. ``read_only=True`` mounts its root
        filesystem read-only; ``tmpfs`` mounts fresh tmpfs file systems
        (``{"/run": "size=16m"}``; nosuid, nodev, noexec unless the options
        say otherwise), writable even then.

        ``restart`` ("no", "on-failure[:N]", "always", "unless-stopped") and
        ``healthcheck`` (else the image's) are kept by its supervisor, as
        Docker keeps them (see Container.restart_count, Container.health).

        ``network``: "none" (only loopback; the default), "host" (the
        host's), "bridge" (the default bridge network, made on first use; the
        default when ``ports`` are given) or a network's name (see
        ``engine.networks``). ``ports`` publishes container ports on the host:
        ``{"80/tcp": 8080}``, ``{"80": ("127.0.0.1", 8080)}``, ``{"53/udp":
        None}`` (a free port); see ``Container.ports``. ``hostname`` (default:
        the name) and ``aliases`` (more names it answers to on its network);
        ``ip``: its address there (a network of the user's; default: a free one).
        ``dns``, ``dns_search``, ``dns_opt``: its resolv.conf's name servers
        (on the default bridge only: a user network's own DNS server answers
        there), search domains and options, as ``docker run --dns…``.

        Raises ImageNotFound, Conflict (name taken, a host port taken), SpecError (bad name,
        command, entrypoint, env, mount, user, port, host name, stop signal or timeout, tmpfs or
        console size), TypeError (tty, stdin or read_only not a bool), LimitError (a limit the host
        cannot enforce), NetworkNotFound, LXCError (userns=True on a host with no subordinate
        ids for root; the host refused a network's link or rule).
        """
        from pylxcore.images import BuiltImage  # (deferred, as Engine.images loads it: see there)

        if isinstance(image, BuiltImage):  # (as docker-py takes an Image: by its id)
            image = image.id
        record = self._engine.images.record(image)
        if any(getattr(m, "volume", None) for m in mounts):
            # Each volume's data dir; one made now gets the image's files there, as docker's.
            in_userns = self._engine.userns if userns is None else userns
            mounts = self._engine.volumes.resolve(mounts, layers=record.layers, userns=in_userns is True)
        if name is None:
            name = "px-" + os.urandom(5).hex()
        net = network if network is not None else ("bridge" if ports else "none")
        resolver = validate.dns_settings(dns, dns_search, dns_opt)
        with self._claim(name) as key:
            c = self._provision(
                key,
                record,
                image,
                command,
                entrypoint=entrypoint,
                name=name,
                env=env,
                workdir=workdir,
                user=user,
                limits=limits,
                mounts=mounts,
                network=net,
                attachment=self._attach(key, name, net, ports, hostname, aliases, ip, resolver),
                labels=labels,
                userns=self._engine.userns if userns is None else userns,
                log_max_size=log_max_size,
                log_max_files=log_max_files,
                restart=restart,
                healthcheck=healthcheck,
                tty=tty,
                stdin=stdin,
                stop_signal=stop_signal,
                stop_timeout=stop_timeout,
                read_only=read_only,
                tmpfs=tmpfs,
                console_size=console_size,
            )
        record_event(self._store, c, "create")
        return c

    def _provision(self, key: str, record: ImageRecord, image: str, command: Command, *, name: str,
                   network: str, attachment: Attachment | None, **options: Any) -> Container:
        """Make container ``name`` (key ``key``, claimed: see _claim) with
        its place on ``network``; give the place back if that fails."""
        names.point(self._store, name, key)  # (an entry whose record is not there yet means nothing)
        try:
            provision(
                self._store,
                record,
                image,
                command,
                key=key,
                name=name,
                network=network,
                attachment=attachment,
                **options,
            )
        except BaseException:
            names.unpoint(self._store, name, key)
            if attachment is not None:
                self._engine.networks.release(key, network)
            raise
        if attachment is not None:
            self._engine.networks.committed(key)
        return self._load(name)

    def _attach(
        self, key: str, name: str, network: str, ports: Mapping[str, Any] | None, hostname: str | None,
        aliases: Sequence[str], ip: str | None = None, resolver: Mapping[str, Any] | None = None,
    ) -> Attachment | None:
        """The place on ``network`` (see pylxcore.network) of container
        ``name`` (key ``key``, claimed), None for "none" and "host". Raises
        what ``create`` raises for these."""
        if network in ("none", "host"):
            if ports or aliases or hostname is not None or ip is not None or resolver:
                raise SpecError(
                    f"ports, hostname, aliases, ip and dns need a network, and network is {network!r}",
                    key="network",
                )
            return None
        if key != name and hostname is None:
            hostname = name  # (the network would take its key for its host name)
        return self._engine.networks.attach(key, network, ports=ports, hostname=hostname, aliases=aliases,
                                            ip=ip, dns_settings=resolver, name=name)

    def run(
        self,
        image: str | BuiltImage,
        command: Command = None,
        *,
        entrypoint: Command = None,
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
        network: str | None = None,
        ports: Mapping[str, Any] | None = None,
        hostname: str | None = None,
        aliases: Sequence[str] = (),
        ip: str | None = None,
        dns: Sequence[str] | None = None,
        dns_search: Sequence[str] | None = None,
        dns_opt: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        userns: bool | None = None,
        log_max_size: int | str | None = None,
        log_max_files: int = DEFAULT_LOG_MAX_FILES,
        restart: str | None = None,
        healthcheck: Healthcheck | None = None,
        tty: bool = False,
        stdin: bool = False,
        stop_signal: str | None = None,
        stop_timeout: float | None = None,
        read_only: bool = False,
        tmpfs: Mapping[str, str] | None = None,
        console_size: tuple[int, int] | None = None,
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
        validate_container_name(name)
        if remove and validate.restart_policy(restart) != "no":
            raise SpecError(
                "a container removed when it exits cannot restart: give remove or restart", key="restart"
            )
        # The container's lock is held from creation until it runs: until then
        # it reads as "created", and a concurrent prune() must not remove it.
        with self._claim(name) as key:
            c = self.create(
                image,
                command,
                entrypoint=entrypoint,
                name=name,
                env=env,
                workdir=workdir,
                user=user,
                limits=limits,
                mounts=mounts,
                network=network,
                ports=ports,
                hostname=hostname,
                aliases=aliases,
                ip=ip,
                dns=dns,
                dns_search=dns_search,
                dns_opt=dns_opt,
                labels=labels,
                userns=userns,
                log_max_size=log_max_size,
                log_max_files=log_max_files,
                restart=restart,
                healthcheck=healthcheck,
                tty=tty,
                stdin=stdin,
                stop_signal=stop_signal,
                stop_timeout=stop_timeout,
                read_only=read_only,
                tmpfs=tmpfs,
                console_size=console_size,
            )
            meta = c._meta()
            try:
                self._launch(key, meta, auto_remove=detach and remove)
            except BaseException:
                self._delete(key, locked=True, running_ok=True)
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
            command = list(meta.command)
        finally:
            if remove:
                c.remove(force=True)
        if check and result.exit_code != 0:
            raise ContainerError(
                container=c.name,
                exit_status=result.exit_code,
                command=command,
                image=c.image,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result

    # -- internals -------------------------------------------------------------

    def _launch(self, key: str, meta: ContainerRecord, *, auto_remove: bool) -> None:
        """Start the container of key ``key`` (see pylxcore.runtime.starting.launch).
        Raises LXCError, LimitError or StorageError when it cannot start."""
        launch(self, key, meta, auto_remove=auto_remove)

    def _delete(self, key: str, *, locked: bool = False, running_ok: bool = False) -> None:
        """Remove the container of key ``key`` (see pylxcore.runtime.removal.delete). Raises InvalidState."""
        delete(self, key, locked=locked, running_ok=running_ok)

    def _remove_cgroups(self, key: str) -> None:
        """liblxc removes a container's cgroups when it stops; this sweeps what a
        crash may have left, killing what still lives there (the payload of a
        monitor that was killed)."""
        remove_cgroups(self._cgroup_dir(key))


__all__ = ["ContainerCollection"]
