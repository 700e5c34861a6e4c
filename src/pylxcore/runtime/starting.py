"""Starting a container, from the library's side: check what it runs, write
what its supervisor needs (the run spec, the policy spec) and start the
supervisor (pylxcore.runtime.launch); turn liblxc's start failures into typed
errors (pylxcore.runtime.failures).

These are the insides of ContainerCollection.run()/start(); they take the
collection for its store, engine and paths.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, NoReturn, Sequence

from pylxcore.errors import LimitError, LXCError
from pylxcore.runtime import liblxc
from pylxcore.runtime.events import events_path
from pylxcore.runtime.failures import raise_start_failure
from pylxcore.runtime.launch import start_supervisor
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.lxcconfig import DEFAULT_PATH, split_env
from pylxcore.runtime.programs import (
    PROGRAM_NOT_EXECUTABLE,
    PROGRAM_NOT_FOUND,
    cannot_execute,
    executable_found,
)
from pylxcore.runtime.provision import DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE
from pylxcore.store.records import ContainerRecord
from pylxcore.supervisor.policy import STOP_MARK, PolicySpec
from pylxcore.supervisor.protocol import OK, start_failure_lines
from pylxcore.supervisor.runspec import RunSpec

if TYPE_CHECKING:
    from pylxcore.runtime.containers import ContainerCollection


def launch(collection: ContainerCollection, key: str, meta: ContainerRecord, *, auto_remove: bool) -> None:
    """Start the container of key ``key`` (``meta``: its record): write what its
    supervisor runs, and start the supervisor (see pylxcore.runtime.launch).
    Raises LXCError, LimitError or StorageError when it cannot start."""
    d, name = collection._dir(key), meta.name
    memory = host_layout().controllers.get("memory")
    oom = ""
    if memory is not None:
        counter = "memory.oom_control" if memory[0] == "v1" else "memory.events"
        oom = os.path.join(memory[1], collection._cgroup_dir(key), counter)
    # liblxc's init reports a program it cannot exec only as exit code
    # 255; say what is wrong instead, before anything starts (as Docker does).
    argv = list(meta.command)
    why = cannot_execute(meta, d / "upper", collection._store)
    if why is not None:
        raise LXCError(
            f"cannot start container {name!r}: exec: {argv[0]!r}: {why}",
            operation="start",
            container=name,
            detail=PROGRAM_NOT_EXECUTABLE,
        )
    if not executable_found(meta, d / "upper", collection._store):
        where = "no such file in the container" if "/" in argv[0] else "not found in $PATH"
        raise LXCError(
            f"cannot start container {name!r}: exec: {argv[0]!r}: {where}",
            operation="start",
            container=name,
            detail=PROGRAM_NOT_FOUND,
        )
    pids = meta.limits.pids
    if pids is not None and pids < 2:
        # liblxc's init cannot fork the command then, and exits 1 without a
        # word: that would read as the command's exit code.
        raise LimitError(
            f"cannot start container {name!r}: pids limit {pids} is too small to start a container"
            " (liblxc's init and the command are 2 processes); give at least 2, more to exec in it",
            limit="pids",
            value=pids,
        )
    if meta.extra.get("networks"):
        collection._engine.networks.ready(meta.to_json())  # (after a reboot, bridges and rules are gone)
    _, inherited = split_env(meta.env)
    lxcpath = str(collection._store.containers_dir)
    command = liblxc.execute_argv(key, lxcpath, argv, str(d / "lxc.log"), inherit=[k for k, _ in inherited])
    RunSpec(
        command,
        env=liblxc.execute_env(inherited),
        auto_remove=auto_remove,
        oom_path=oom,
        # (Containers created before logs rotated have no cap of their own.)
        log_max_size=DEFAULT_LOG_MAX_SIZE if meta.log_max_size is None else meta.log_max_size,
        log_max_files=DEFAULT_LOG_MAX_FILES if meta.log_max_files is None else meta.log_max_files,
        tty=bool(meta.extra.get("tty")),
        stdin=bool(meta.extra.get("open_stdin")),
        console_size=tuple(meta.extra.get("console_size") or (24, 80)),
    ).write(str(d))
    policy_spec(collection, key, meta).write(str(d))
    with contextlib.suppress(FileNotFoundError):
        (d / STOP_MARK).unlink()  # started again: a new end may be restarted from
    try:
        answer = start_supervisor(collection._store.containers_dir, d)
    except OSError as err:
        answer = f"error: cannot start a supervisor: {err}".encode()
    if answer == OK:
        if meta.extra.get("networks"):  # (its netns file goes: see pylxcore.network.netns)
            collection._engine.networks.started(meta.to_json())
        return
    lines = start_failure_lines(answer)
    if lines is not None:
        start_failed(collection, key, meta, lines)
    raise LXCError(
        f"could not start container {name!r}: {answer.decode(errors='replace').strip()}",
        operation="start",
        container=name,
        detail=answer.decode(errors="replace"),
    )


def policy_spec(collection: ContainerCollection, key: str, meta: ContainerRecord) -> PolicySpec:
    """What the supervisor of the container of key ``key`` keeps besides the run (see
    pylxcore.supervisor.policy): its restart policy, its healthcheck as
    an lxc-attach command line, where its events go."""
    spec = PolicySpec(
        meta.restart,
        events=str(events_path(collection._store)),
        ctr_id=meta.id,
        image=meta.image,
        name=meta.name,
    )
    check = meta.healthcheck
    if check:
        test = check["test"]
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        if meta.workdir not in ("", "/"):
            # In the container's workdir, as Docker runs it; lxc-attach has no
            # option for that, and would take the supervisor's own ("/").
            argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', meta.workdir, *argv]
        hostname = meta.extra.get("hostname") or key  # (a rename keeps it, as docker's)
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root" if meta.uid == 0 else "/"}
        env.update(meta.env)
        lxcpath = str(collection._store.containers_dir)
        spec.health_argv = liblxc.attach_argv(key, lxcpath, argv, env, meta.uid, meta.gid)
        spec.health_env = env
        spec.interval, spec.timeout = check["interval"], check["timeout"]
        spec.retries, spec.start_period = check["retries"], check["start_period"]
    return spec


def start_failed(
    collection: ContainerCollection, key: str, meta: ContainerRecord, lines: Sequence[str]
) -> NoReturn:
    """Raise the error for the container of key ``key``, which liblxc could not start
    (see pylxcore.runtime.failures), once its leftover cgroups are gone."""
    collection._remove_cgroups(key)  # left when liblxc had to be killed in its setup
    root, containers_dir = collection._store.root, collection._store.containers_dir
    raise_start_failure(meta.name, meta.limits.to_dict(), lines, root=root, containers_dir=containers_dir)
