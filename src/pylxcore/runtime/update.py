"""``Container.update``: change a container's limits and restart policy,
at once if it runs (``docker update``).

A running (or paused) container's cgroup files are written through liblxc
(``Handle.set_cgroup_item``); its record (meta.json) and its liblxc config
are rewritten too, so that its next start (a restart, its restart policy)
runs with the new limits. A limit removed (``pids=-1``) goes back to the
kernel's "no limit" at once (``runtime.limits.released_keys``) and its
config line goes. A new restart policy goes into the record and into the
``policy.spec`` its supervisor reads each time the container's main process
ends (as Docker's restart manager takes a new policy at once). All of it
under the container's lock: no start in between. What a limit may be is
decided where it always is: the Limits converters (SpecError) and
``runtime.limits.cgroup_keys`` (LimitError, what the host cannot enforce);
what a restart policy may be, by ``spec.validate.restart_policy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import attrs

from pylxcore.errors import InvalidState, LimitError, LXCError, SpecError
from pylxcore.runtime.events import record_event
from pylxcore.runtime.limits import CgroupLayout, cgroup_keys, host_layout, released_keys
from pylxcore.runtime.lxcconfig import with_limits
from pylxcore.spec import Limits, validate
from pylxcore.store import atomic_write, canonical_json
from pylxcore.supervisor.policy import PolicySpec
from pylxcore.supervisor.runspec import RunSpec

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

_LIVE = ("running", "paused")


def as_limits(limits: Limits | Mapping[str, object]) -> Limits:
    """``limits`` as a Limits (a mapping like ``{"memory": "64M"}`` is
    read by Limits.from_dict). Raises SpecError, TypeError."""
    if isinstance(limits, Limits):
        return limits
    if isinstance(limits, Mapping):
        return Limits.from_dict(limits)
    raise TypeError(f"limits must be a Limits or a mapping, not {type(limits).__name__}")


def _file_of(key: str) -> str:
    """``lxc.cgroup.memory.limit_in_bytes`` -> ``memory.limit_in_bytes``."""
    return key.removeprefix("lxc.cgroup2.").removeprefix("lxc.cgroup.")


def _ordered(keys: list[tuple[str, str]], grows: bool) -> list[tuple[str, str]]:
    """The cgroup writes in an order the kernel takes: v1 refuses a memory
    limit above memory+swap's, and memory+swap below memory's; so when
    memory grows, memory+swap goes first, and last when it shrinks."""
    swap = [kv for kv in keys if "memsw" in kv[0] or "swap" in kv[0]]
    rest = [kv for kv in keys if kv not in swap]
    return swap + rest if grows else rest + swap


def update(
    container: Container, limits: Limits | Mapping[str, object] | None = None, *, restart: str | None = None
) -> Limits:
    """Merge ``limits`` (the fields it sets; ``pids=-1`` removes the pids
    limit) into the container's limits and apply them: to its cgroups at
    once when it runs or is paused, to its record and config for every later
    start. ``restart`` is its new restart policy, from its main process's
    next end on. Returns the limits it has now. Raises SpecError (a bad
    value, or neither limits nor restart), LimitError (one the host cannot
    enforce, or the kernel refused, like memory below what a running
    container uses: then nothing changed), InvalidState (restarting, for
    limits; a new restart policy for a container that removes itself when
    it exits, as docker refuses it), ContainerNotFound."""
    override = None if limits is None else as_limits(limits)
    policy = None if restart is None else validate.restart_policy(restart)
    if override is None and policy is None:
        raise SpecError("update needs limits or a restart policy (restart=)", key="limits")
    collection = container._collection
    layout = host_layout()
    with collection._lock(container.key):
        meta = container._meta()
        container.reload()
        state = container.state.value
        if policy is not None:
            _check_policy(container, policy, state)
        if override is not None:
            new = _update_limits(container, meta.limits, override, state, layout)
            meta = attrs.evolve(meta, limits=new)
        if policy is not None:
            _update_policy(container, policy)
            meta = attrs.evolve(meta, restart=policy)
        atomic_write(container.dir / "meta.json", canonical_json(meta.to_json()))  # (0600, as every record)
    record_event(collection._store, container, "update")
    return meta.limits


def _update_limits(
    container: Container, old: Limits, override: Limits, state: str, layout: CgroupLayout
) -> Limits:
    """The container's limits with ``override`` merged in, written to its
    cgroups when it runs and to its config. Raises what update raises."""
    new = old.merged(override)
    # The whole set is checked against the host first, as a start would.
    keys = cgroup_keys(new, layout)
    before = cgroup_keys(old, layout)
    changed = [kv for kv in keys if kv not in set(before)] + released_keys(before, keys)
    if state == "restarting":
        raise InvalidState(
            f"cannot update container {container.name!r}: it is restarting; try again once it runs",
            name=container.name, state=state, operation="update",
        )
    if state in _LIVE and changed:
        grows = (new.memory or 1 << 62) >= (old.memory or 1 << 62)
        _apply_live(container, _ordered(changed, grows))
    config = container.dir / "config"
    atomic_write(config, with_limits(config.read_text(), new, layout))
    return new


def _check_policy(container: Container, policy: str, state: str) -> None:
    """Raise InvalidState when the container's run removes it when it
    exits and ``policy`` would restart it (docker's rule)."""
    if policy == "no" or state not in (*_LIVE, "restarting"):
        return
    try:
        auto_remove = RunSpec.read(str(container.dir)).auto_remove
    except (OSError, ValueError):
        return  # (it has just ended)
    if auto_remove:
        raise InvalidState(
            f"cannot update container {container.name!r}: its restart policy cannot change because it is"
            " removed when it exits (run with remove=True, --rm)",
            name=container.name, state=state, operation="update",
        )


def _update_policy(container: Container, policy: str) -> None:
    """Give a running supervisor the new restart ``policy``: its
    ``policy.spec``, which it reads when the main process ends. Raises OSError."""
    ctrdir = str(container.dir)
    try:
        spec = PolicySpec.read(ctrdir)
    except (OSError, ValueError):
        return  # (none to change: its next start writes one from the record)
    spec.restart = policy
    spec.write(ctrdir)


def _apply_live(container: Container, writes: list[tuple[str, str]]) -> None:
    """Write ``writes`` into the running container's cgroups; when the kernel
    refuses one, put back what the files held before and raise LimitError.
    A container that stopped meanwhile is left alone (its next start reads
    the config)."""
    handle = container._collection._handle(container.key)
    done: list[tuple[str, str | None]] = []  # (file, what it held)
    for key, value in writes:
        file = _file_of(key)
        before = handle.cgroup_item(file)
        try:
            handle.set_cgroup_item(file, value)
        except LXCError as err:
            if container.status() not in _LIVE:
                return
            for undo, held in reversed(done):
                if held is not None:
                    try:
                        handle.set_cgroup_item(undo, held)
                    except LXCError:
                        pass  # (best effort: the error below says what failed)
            raise LimitError(
                f"cannot set {file} = {value} on running container {container.name!r}: the kernel refused"
                " it (a memory limit below what the container uses now is refused)",
                limit=file,
                value=value,
            ) from err
        done.append((file, before))
