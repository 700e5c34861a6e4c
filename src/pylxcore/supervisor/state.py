"""A container's ``state.json``, written by its supervisor: "running" with the
pids once the container runs, "exited" with the exit code and whether the
kernel OOM-killed it at the end. Its reader is
pylxcore.store.records.StateRecord, which takes the field names and the
schema from here: this side stays standard-library only (a supervisor starts
in a fresh interpreter), so the layout lives here and the typed reader follows."""

from __future__ import annotations

import os

STATE_FILE = "state.json"
# The version of the layout, written first as the document's "schema" (the
# files of older supervisors have none: the same fields, schema 0).
SCHEMA = 1
# The fields of a state: the status ("running", "restarting" or "exited"),
# the supervisor's pid and start time, lxc-execute's, liblxc init's and the
# main process's pids, when it started and finished, its exit code, whether
# the kernel OOM-killed it, how often its restart policy restarted it, and its
# healthcheck's status (absent: it has none). A new field goes here, and into
# StateRecord (a test holds the two equal, and the supervisor's writes to them).
FIELDS = (
    "status",
    "shim_pid",
    "shim_start",
    "lxc_pid",
    "init_pid",
    "main_pid",
    "started_at",
    "finished_at",
    "exit_code",
    "oom_killed",
    "restart_count",
    "health",
)


def _text(value: str) -> str:
    """A JSON string of ``value``: ASCII, with every other character escaped."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    out = []
    for ch in value:
        code = ord(ch)
        if 0x20 <= code < 0x7F and ch not in '"\\':
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:  # (a surrogate pair, as JSON spells what lies beyond 16 bits)
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return '"' + "".join(out) + '"'


def dumps(value: object) -> str:
    """JSON of ``value``: None, bool, int, float, str, and lists, tuples and
    dicts (str keys) of those. Not the json module: it imports re, which
    costs a supervisor started by a fresh interpreter ~4 ms before its
    container runs. Raises ValueError for any other value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_text(str(k))}: {dumps(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot encode {value!r} in a state")


def write_state(path: str, state: dict[str, object], *, durable: bool = True) -> None:
    """Replace ``path`` with ``state`` as JSON, atomically (temp + rename),
    mode 0600; with ``durable``, on disk before the rename (fsync). Raises
    OSError (the old file is then intact), ValueError for a value that
    ``dumps`` cannot encode. The document starts with its ``schema``."""
    data = dumps({"schema": SCHEMA, **state}).encode()
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
