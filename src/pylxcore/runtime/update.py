"""``Container.update``: change a container's limits, at once if it runs (``docker update``).

A running (or paused) container's cgroup files are written through liblxc
(``Handle.set_cgroup_item``); its record (meta.json) and its liblxc config
are rewritten too, so that its next start (a restart, its restart policy)
runs with the new limits. All of it under the container's lock: no start
in between. What a limit may be is decided where it always is: the Limits
converters (SpecError) and ``runtime.limits.cgroup_keys`` (LimitError, what
the host cannot enforce).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import attrs

from pylxcore.errors import InvalidState, LimitError, LXCError
from pylxcore.runtime.events import record_event
from pylxcore.runtime.limits import cgroup_keys, host_layout
from pylxcore.runtime.lxcconfig import with_limits
from pylxcore.spec import Limits
from pylxcore.store import atomic_write, canonical_json

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


def update(container: Container, limits: Limits | Mapping[str, object]) -> Limits:
    """Merge ``limits`` (the fields it sets) into the container's limits and
    apply them: to its cgroups at once when it runs or is paused, to its
    record and config for every later start. Returns the limits it has now.
    Raises SpecError (a bad value), LimitError (one the host cannot enforce,
    or the kernel refused, like memory below what a running container uses:
    then nothing changed), InvalidState (restarting), ContainerNotFound."""
    override = as_limits(limits)
    collection = container._collection
    layout = host_layout()
    with collection._lock(container.name):
        meta = container._meta()
        new = meta.limits.merged(override)
        # The whole set is checked against the host first, as a start would.
        keys = cgroup_keys(new, layout)
        before = set(cgroup_keys(meta.limits, layout))
        changed = [(k, v) for k, v in keys if (k, v) not in before]
        container.reload()
        state = container.state.value
        if state == "restarting":
            raise InvalidState(
                f"cannot update container {container.name!r}: it is restarting; try again once it runs",
                name=container.name, state=state, operation="update",
            )
        if state in _LIVE and changed:
            grows = (new.memory or 1 << 62) >= (meta.limits.memory or 1 << 62)
            _apply_live(container, _ordered(changed, grows))
        config = container.dir / "config"
        atomic_write(config, with_limits(config.read_text(), new, layout))  # (0600, as every record)
        atomic_write(container.dir / "meta.json", canonical_json(attrs.evolve(meta, limits=new).to_json()))
    record_event(collection._store, container, "update")
    return new


def _apply_live(container: Container, writes: list[tuple[str, str]]) -> None:
    """Write ``writes`` into the running container's cgroups; when the kernel
    refuses one, put back what the files held before and raise LimitError.
    A container that stopped meanwhile is left alone (its next start reads
    the config)."""
    handle = container._collection._handle(container.name)
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
