"""Build events and what becomes of them: the log, the progress printer, a caller's callable."""

from __future__ import annotations

import sys
from typing import Any, Callable, Literal, Union

import attrs

from pylxcore._log import log


@attrs.frozen
class BuildEvent:
    """One thing that happened during a build, for ``progress=callable``.

    ``kind`` is "step" (a step starts: ``cached`` says whether it will run),
    "output" (one line the step printed, in ``line``), "step_done" (with
    ``seconds``) or "done" (the whole image, with ``image_id``).
    """

    kind: Literal["step", "output", "step_done", "done"]
    index: int  # 0 is the base, 1..N the layers
    total: int
    instruction: str = ""
    cached: bool | None = None
    seconds: float | None = None
    line: str = ""
    image_id: str = ""


Progress = Union[bool, Callable[[BuildEvent], None], None]


class Printer:
    """``progress=True``: docker-build-like lines on stdout."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, ev: BuildEvent) -> None:
        if ev.kind == "step":
            state = "CACHED" if ev.cached else "RUN"
            text = ev.instruction if len(ev.instruction) <= 100 else ev.instruction[:99] + "…"
            print(f"Step {ev.index}/{ev.total - 1} : {text}  [{state}]", file=self.stream, flush=True)
        elif ev.kind == "output":
            print(f"  | {ev.line}", file=self.stream, flush=True)
        elif ev.kind == "step_done":
            print(f"  --> {ev.seconds:.2f}s", file=self.stream, flush=True)
        elif ev.kind == "done":
            print(f"Built {ev.image_id[:19]}  ({ev.seconds:.2f}s)", file=self.stream, flush=True)


def _logged(ev: BuildEvent) -> None:
    if ev.kind == "step":
        log(
            "debug",
            "step %d/%d %s (%s)",
            ev.index,
            ev.total - 1,
            ev.instruction,
            "cached" if ev.cached else "run",
        )
    elif ev.kind == "output":
        log("debug", "step %d: %s", ev.index, ev.line)
    elif ev.kind == "done":
        log("info", "built %s in %.2fs", ev.image_id, ev.seconds or 0.0)


def emitter(progress: Progress) -> Callable[[BuildEvent], None]:
    """Every event goes to the pylxcore logger, and to the printer or callable asked for."""
    if progress is True:
        printer: Callable[[BuildEvent], None] = Printer()
    elif callable(progress):
        printer = progress
    else:
        return _logged

    def both(ev: BuildEvent) -> None:
        _logged(ev)
        printer(ev)

    return both


__all__ = ["BuildEvent", "Progress", "Printer", "emitter"]
