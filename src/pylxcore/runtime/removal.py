"""Removing a container: its dir (renamed away first, so readers see it
whole or not at all), what a killed supervisor left running, its network
allocations and its cgroups. The insides of Container.remove() and prune().
"""

from __future__ import annotations

import contextlib
import os
import select
from typing import TYPE_CHECKING

from pylxcore.errors import InvalidState, StorageError
from pylxcore.runtime import names
from pylxcore.runtime.container import Container
from pylxcore.runtime.events import events_path
from pylxcore.runtime.processes import kill_and_reap, lxc_processes
from pylxcore.runtime.state import ContainerState, StateRecord
from pylxcore.store import rmtree
from pylxcore.store.records import ContainerRecord
from pylxcore.supervisor.events import append_event
from pylxcore.supervisor.state import STATE_FILE

if TYPE_CHECKING:
    from pylxcore.runtime.containers import ContainerCollection


def delete(
    collection: ContainerCollection, key: str, *, locked: bool = False, running_ok: bool = False
) -> None:
    """Remove the container of key ``key`` and all it holds (its dir, its
    name, its network allocations, its cgroups); nothing when it is gone
    already. Unless ``running_ok``, raises InvalidState when it is running
    (checked under its lock). ``locked``: the caller holds its lock."""
    d = collection._dir(key)
    with contextlib.nullcontext() if locked else collection._lock(key):
        if not d.exists():
            return
        if not running_ok:
            # Checked again under the lock: another process may have started
            # it since the caller looked (e.g. prune() against run()).
            try:
                c: Container | None = collection._from_meta(ContainerRecord.read(d / "meta.json"))
            except (OSError, StorageError):
                c = None  # an unreadable record: nothing runs from it, remove it
            if c is not None and c.state in (ContainerState.RUNNING, ContainerState.FROZEN):
                raise InvalidState(
                    f"cannot remove container {c.name!r}: it is {c.state.value} (started meanwhile)",
                    name=c.name,
                    state=c.state.value,
                    operation="remove",
                )
        # A supervisor writes "exited" only after lxc-execute has ended;
        # one never started left nothing running.
        try:
            state = StateRecord.read(d / STATE_FILE)
        except (OSError, StorageError):
            state = None
        try:
            c_meta: ContainerRecord | None = ContainerRecord.read(d / "meta.json")
        except (OSError, StorageError):
            c_meta = None
        clean = state.status == "exited" if state is not None else not (d / "run.spec").exists()
        if clean and state is not None:
            if c_meta is not None and c_meta.attachable:
                # Its supervisor may be waiting for a caller to come for a
                # short last run's output; none will now.
                from pylxcore.runtime.attach import let_go  # (deferred: socket, for these only)

                let_go(str(d))
            # "exited" is written before the supervisor's last words (its
            # events, the durable state): let it finish, or it writes
            # into the dir while we delete it.
            _wait_for_exit(state)
        if not clean:
            # A supervisor that was killed leaves lxc-execute and the payload
            # running with nobody to read their output: end them with it.
            for pid, argv in lxc_processes(collection._store.containers_dir):
                if "-n" in argv[:-1] and argv[argv.index("-n") + 1] == key:
                    kill_and_reap(pid)
        if c_meta is not None:
            # Its name first: once its dir is gone, the name may be taken again.
            names.unpoint(collection._store, c_meta.name, key)
        # Rename first: readers see the container or nothing, never half of it.
        doomed = collection._store.staging_dir("rm-ctr")
        try:
            os.rename(d, doomed / key)
        except FileNotFoundError:
            # Its supervisor (remove=True) removed it while we waited for it
            # to exit, and says "destroy" itself.
            c_meta = None
        rmtree(doomed)
        collection._store.drop_lock(f"ctr-{key}")  # we hold it: see Store.lock
        if c_meta is not None:
            path = str(events_path(collection._store))
            append_event(path, "destroy", ctr_id=c_meta.id, name=c_meta.name, image=c_meta.image)
    if (collection._store.root / "networks").is_dir():
        collection._engine.networks.release(key)  # its addresses, ports, rules and names
    # Even after a clean exit: liblxc cannot remove a cgroup that an exec
    # into the container still occupied as it stopped.
    collection._remove_cgroups(key)


def _wait_for_exit(state: StateRecord, timeout: float = 10.0) -> None:
    """Wait until the supervisor that wrote ``state`` has exited (it does so
    right after writing "exited"); after ``timeout`` seconds, go on. Raises nothing."""
    if not state.supervisor_alive():
        return
    try:
        pidfd = os.pidfd_open(int(state.shim_pid))  # type: ignore[arg-type]
    except OSError:
        return
    try:
        if state.supervisor_alive():  # (the pid may have been reused before the open)
            select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
