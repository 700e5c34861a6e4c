"""The store's events log, as its writers append to it: the library (create,
kill, stop, restart, destroy, exec_start) and the supervisors (start, die,
oom, health_status), each when it causes the event. Readers are in
pylxcore.runtime.events.

``ROOT/events.log``: one JSON object a line (Docker's event fields:
``time``, ``type``, ``action``, ``id``, ``name``, ``image``,
``attributes``), appended with one ``write`` on an O_APPEND file, so lines
from many processes never interleave. Past EVENTS_MAX_SIZE it is renamed
``events.log.1`` (the one before that goes) and a fresh one starts.
"""

from __future__ import annotations

import os
import time

from pylxcore.supervisor.state import dumps

EVENTS_FILE = "events.log"
EVENTS_MAX_SIZE = 4 << 20


def append_event(
    path: str, action: str, *, ctr_id: str, name: str, image: str, attributes: dict[str, str] | None = None
) -> None:
    """Append one container event to the log at ``path``, stamped now. An
    event that cannot be written is lost: it never fails what caused it.
    Raises nothing."""
    event = {
        "time": time.time(),
        "type": "container",
        "action": action,
        "id": ctr_id,
        "name": name,
        "image": image,
        "attributes": attributes or {},
    }
    try:
        line = (dumps(event) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (OSError, ValueError):
        return
    try:
        if os.fstat(fd).st_size > EVENTS_MAX_SIZE:
            # Whoever finds it full rotates it; a writer that opened it just
            # before appends to the old file, which readers read first.
            try:
                os.rename(path, path + ".1")
            except OSError:
                pass
            os.close(fd)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)
