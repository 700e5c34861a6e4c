"""A container's ``state.json``, written by its supervisor: "running" with the
pids once the container runs, "exited" with the exit code and whether the
kernel OOM-killed it at the end. Readers are in pylxcore.runtime."""

from __future__ import annotations

import os

STATE_FILE = "state.json"


def _json(value: object) -> str:
    """JSON of one of the flat values a state holds (None, bool, int, float,
    plain ASCII str). Not the json module: it imports re, which costs a
    supervisor started by a fresh interpreter ~4 ms before its container runs."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return f'"{value}"'
    raise ValueError(f"cannot encode {value!r} in a state")


def write_state(path: str, state: dict[str, object], *, durable: bool = True) -> None:
    """Replace ``path`` with ``state`` as JSON, atomically (temp + rename),
    mode 0600; with ``durable``, on disk before the rename (fsync). Raises
    OSError (the old file is then intact), ValueError for a value that is
    not one of None, bool, int, float or a plain ASCII str."""
    data = ("{" + ", ".join(f"{_json(k)}: {_json(v)}" for k, v in state.items()) + "}").encode()
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
