"""A container's ``state.json`` as the library reads it: :class:`StateRecord`.

The supervisor writes the file with the standard library alone (it starts in
a fresh interpreter): the field names and the schema are
pylxcore.supervisor.state's, and this record takes them from there. Like
the store's documents (pylxcore.store.records), a state of a newer schema is
a StorageError naming the file, and one written before states had a schema
still reads.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

import attrs

from pylxcore.errors import StorageError
from pylxcore.procs import process_start_time
from pylxcore.store.records import bad_record, load, schema_of
from pylxcore.supervisor import state as supervisor_state

STATE_SCHEMA = supervisor_state.SCHEMA


class ContainerState(str, enum.Enum):
    """The life stages of a container (the values read like ``docker ps``)."""

    CREATED = "created"
    RUNNING = "running"
    FROZEN = "paused"
    RESTARTING = "restarting"  # ended; its supervisor starts it again after a back-off
    EXITED = "exited"


@attrs.frozen
class StateRecord:
    """``containers/<name>/state.json``, as the container's supervisor wrote it:
    "running" with its pids, then "exited" with the exit code and whether the
    kernel OOM-killed it (or "restarting", when its restart policy starts it
    again). The fields are pylxcore.supervisor.state.FIELDS (the supervisor
    writes them with its own stdlib writer), in that order; a field the
    supervisor has not written yet reads as its default."""

    status: str
    shim_pid: int | None = None  # the supervisor's pid, and its start time (see pylxcore.procs)
    shim_start: int | None = None
    lxc_pid: int | None = None
    init_pid: int | None = None
    main_pid: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    restart_count: int = 0  # restarts by its restart policy since it was started
    health: str | None = None  # "starting", "healthy", "unhealthy"; None: no healthcheck

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> StateRecord:
        """The state ``data`` read from ``path``. Raises StorageError."""
        schema_of(data, STATE_SCHEMA, path)
        try:
            values = {name: data[name] for name in supervisor_state.FIELDS if data.get(name) is not None}
            if not isinstance(values.get("status"), str):
                raise ValueError(f"status is not a string: {values.get('status')!r}")
            values["oom_killed"] = bool(values.get("oom_killed"))
            values["restart_count"] = int(values.get("restart_count", 0))
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise bad_record(path, err) from err

    @classmethod
    def read(cls, path: Path) -> StateRecord | None:
        """The state at ``path``; None when there is none, or when it cannot be
        read (only a crash mid-write of an older supervisor could leave that:
        the container then reads as never started). Raises FileNotFoundError
        when ``path``'s dir is gone too, StorageError for a newer schema."""
        try:
            data = load(path)
        except FileNotFoundError:
            if not path.parent.exists():
                raise
            return None
        except StorageError:
            return None
        return cls.from_json(data, path)

    def to_json(self) -> dict[str, Any]:
        """The document, as the supervisor's writer spells it."""
        return {"schema": STATE_SCHEMA, **{name: getattr(self, name) for name in supervisor_state.FIELDS}}

    def write(self, path: Path, *, durable: bool = True) -> None:
        """Replace the state at ``path`` with this one, with the supervisor's own
        writer (atomic, 0600). Raises OSError."""
        values = {name: getattr(self, name) for name in supervisor_state.FIELDS}
        supervisor_state.write_state(str(path), values, durable=durable)

    def supervisor_alive(self) -> bool:
        """Whether the supervisor that wrote this state still runs (its pid has
        the start time recorded: a pid alone may have been reused)."""
        return (
            self.shim_pid is not None
            and self.shim_start is not None
            and process_start_time(int(self.shim_pid)) == self.shim_start
        )


# inotify(7): a file renamed into the dir (write_state replaces state.json
# so), and the dir itself removed.
_IN_MOVED_TO, _IN_DELETE_SELF = 0x80, 0x400


def watch_state(ctrdir: Path) -> int:
    """A descriptor (non-blocking, close-on-exec; the caller closes it) that
    becomes readable each time the supervisor replaces the state in
    ``ctrdir``, and when the dir goes: a waiter selects on it instead of
    polling. Read it empty (``os.read``) before each select. Raises OSError."""
    import ctypes  # (only a waiter on a container that has an attach socket needs it: see Container.wait)

    libc = ctypes.CDLL(None, use_errno=True)
    fd: int = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)  # (IN_NONBLOCK, IN_CLOEXEC are these)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if libc.inotify_add_watch(fd, os.fsencode(ctrdir), _IN_MOVED_TO | _IN_DELETE_SELF) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {ctrdir}")
    return fd


__all__ = ["STATE_SCHEMA", "StateRecord", "watch_state"]
