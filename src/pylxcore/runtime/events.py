"""``engine.events()``: what happened to the store's containers, read from
its events log (written as it happens: see pylxcore.supervisor.events), and
the library's side of writing it.

Actions, as Docker names them: create, start, die (``exitCode``), oom,
kill (``signal``), stop, restart, ``health_status: STATUS``, destroy,
``exec_start: COMMAND LINE`` (``execID``: an id of its own). Who causes one records it:
the library (create, kill, stop, restart, destroy, exec_start) or the
container's supervisor (start, die, oom, health_status, and destroy after an
auto-removal).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import attrs

from pylxcore.errors import SpecError
from pylxcore.supervisor.events import EVENTS_FILE, append_event

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container
    from pylxcore.store import Store

# The filters ``events`` takes (Docker's names), and what each matches.
FILTERS = ("container", "event", "image", "type")
_FOLLOW_POLL = 0.05


@attrs.frozen
class Event:
    """One event: ``time`` (unix seconds), ``type`` ("container"),
    ``action`` ("die", "health_status: healthy", …), the container's ``id``,
    ``name`` and ``image``, and ``attributes`` (``exitCode``, ``signal``, …)."""

    time: float
    type: str
    action: str
    id: str
    name: str
    image: str
    attributes: Mapping[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As plain data (one line of ``events --format json``)."""
        return attrs.asdict(self)


def events_path(store: Store) -> Path:
    """Where the events of ``store`` are kept. Raises nothing."""
    return store.root / EVENTS_FILE


def record_event(store: Store, container: Container, action: str, **attributes: str) -> None:
    """Append ``action`` of ``container`` to the events log. Raises nothing."""
    path = str(events_path(store))
    name, image = container.name, container.image
    append_event(path, action, ctr_id=container.id, name=name, image=image, attributes=attributes)


def _filters(filters: Mapping[str, Any] | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key, value in (filters or {}).items():
        if key not in FILTERS:
            allowed = ", ".join(FILTERS)
            raise SpecError(f"unknown events filter {key!r}; allowed: {allowed}", key=f"filters.{key}")
        values = {value} if isinstance(value, str) else set(value)
        if not values or not all(isinstance(v, str) for v in values):
            raise SpecError(f"expected a string or a list of strings, got {value!r}", key=f"filters.{key}")
        out[key] = values
    return out


def _matches(event: Event, filters: dict[str, set[str]]) -> bool:
    """Docker's rules: every filter key must match; within one key, any value.
    A container is named by its name, full id or id prefix; ``event`` by its
    action or the part before ":" ("health_status")."""
    for key, values in filters.items():
        if key == "container":
            ok = any(v in (event.name, event.id) or (len(v) >= 4 and event.id.startswith(v)) for v in values)
        elif key == "event":
            ok = event.action in values or event.action.split(":")[0] in values
        elif key == "image":
            ok = event.image in values
        else:
            ok = event.type in values
        if not ok:
            return False
    return True


def _parse(line: bytes) -> Event | None:
    try:
        data = json.loads(line)
        return Event(
            data["time"], data["type"], data["action"], data["id"], data["name"], data["image"],
            dict(data.get("attributes") or {}),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a full disk, or not ours


class _Tail:
    """The log read from where the last read ended, across rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None
        self.ino = -1
        self.rest = b""

    def lines(self) -> list[bytes]:
        """The whole lines written since the last call."""
        out: list[bytes] = []
        if self.fh is None:
            for old in (Path(f"{self.path}.1"), self.path):
                try:
                    fh = open(old, "rb")
                except FileNotFoundError:
                    continue
                if old == self.path:
                    self.fh, self.ino = fh, os.fstat(fh.fileno()).st_ino
                    break
                with fh:
                    out += fh.read().splitlines()
        if self.fh is not None:
            out += self._read()
            try:
                rotated = os.stat(self.path).st_ino != self.ino
            except FileNotFoundError:
                rotated = False
            if rotated:  # the rest of the old file, then the new one from its start
                out += self._read()
                self.fh.close()
                self.fh, self.rest = None, b""
                out += self.lines()
        return out

    def _read(self) -> list[bytes]:
        data: bytes = self.rest + self.fh.read()
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return data[:cut].splitlines()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def read_events(
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    filters: Mapping[str, Any] | None = None,
    follow: bool = False,
) -> Iterator[Event]:
    """The events of ``store`` from ``since`` to ``until`` (unix times; None:
    from the first, to now), oldest first, that match ``filters`` (see
    FILTERS). With ``follow``, then those that happen, as they happen, until
    ``until`` passes (None: for ever; stop iterating to end it). Raises
    SpecError for a bad filter."""
    wanted = _filters(filters)
    end = time.time() if until is None and not follow else until
    tail = _Tail(events_path(store))
    try:
        while True:
            for line in tail.lines():
                event = _parse(line)
                if event is None or (since is not None and event.time < since):
                    continue
                if end is not None and event.time > end:
                    continue
                if _matches(event, wanted):
                    yield event
            if not follow or (end is not None and time.time() > end):
                return
            time.sleep(_FOLLOW_POLL)
    finally:
        tail.close()
