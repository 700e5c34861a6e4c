"""Pull and push progress: events, the ``pylxcore`` logger, and one live display.

The same shape as a build's progress (pylxcore.build.progress):
``progress=None`` logs only, ``progress=True`` shows a display, a callable
receives every event (``TransferEvent``), and every event but the byte
counts also goes to the ``pylxcore`` logger.

The display is tqdm's: one bar per layer blob that moves (bytes done, total,
speed, time left), updated in place and left as one line when the layer is
done; a layer that need not move is one line. In Jupyter it is a widget when
ipywidgets is installed; otherwise (and on a terminal) it is text on stderr,
which a notebook also updates in place.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Literal, Union

import attrs

from pylxcore._log import log


@attrs.frozen
class TransferEvent:
    """One thing that happened during a pull or a push, for ``progress=callable``.

    ``kind`` is "layer" (a layer blob starts moving; ``size`` bytes), "bytes"
    (``done`` of its bytes have moved), "layer_done" (with ``seconds``),
    "exists" (the other side has the layer already, or a push mounted it from
    another repository: nothing moves) or "done" (the whole image, with
    ``seconds``). ``index`` counts layers from 1 to ``total``, bottom first.
    """

    kind: Literal["layer", "bytes", "layer_done", "exists", "done"]
    action: Literal["pull", "push"]
    ref: str  # what is pulled, or where it is pushed
    index: int = 0
    total: int = 0
    digest: str = ""  # the layer blob's
    size: int | None = None
    done: int = 0
    seconds: float | None = None

    @property
    def short(self) -> str:
        """The blob's digest as docker shows it (12 hex digits)."""
        return self.digest.partition(":")[2][:12]


TransferProgress = Union[bool, Callable[[TransferEvent], None], None]
_WIDTH, _HEIGHT = 100, 24  # a terminal's size where it cannot be known


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    kernel = get() if callable(get) else None
    return kernel is not None and "IPKernelApp" in getattr(kernel, "config", {})


def _bar_class() -> tuple[Any, bool]:
    """(tqdm's bar class, whether it is a widget): the widget in Jupyter when
    ipywidgets is there, else the text bar."""
    if _in_jupyter():
        try:
            import ipywidgets  # type: ignore[import-not-found]  # noqa: F401
            from tqdm.notebook import tqdm as notebook_bar  # type: ignore[import-untyped]

            return notebook_bar, True
        except ImportError:
            pass  # text on stderr: Jupyter updates it in place too
    from tqdm import tqdm as text_bar  # type: ignore[import-untyped]

    return text_bar, False


class Display:
    """``progress=True``: the live display (see the module's docstring)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._bar_class, self._widget = _bar_class()
        self._bar: Any = None
        try:
            self._sized = os.get_terminal_size(self.stream.fileno()).columns > 0
        except (AttributeError, OSError, ValueError):
            self._sized = False

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, ev: TransferEvent) -> None:
        if ev.kind == "layer":
            self.close()
            text: dict[str, Any] = {}
            if not self._widget:
                # A terminal's size as it changes; a fixed one where there is
                # none to ask (Jupyter) or it says 0x0 (a pty nobody sized),
                # which tqdm would take as no room for any bar.
                text = {"file": self.stream, "dynamic_ncols": self._sized}
                if not self._sized:
                    text |= {"ncols": _WIDTH, "nrows": _HEIGHT}
            desc = f"{ev.short} {ev.index}/{ev.total}"
            self._bar = self._bar_class(total=ev.size, desc=desc, unit="B", unit_scale=True, **text)
        elif ev.kind == "bytes" and self._bar is not None:
            self._bar.update(ev.done - self._bar.n)
        elif ev.kind == "layer_done":
            self.close()
        elif ev.kind == "exists":
            where = "in the store" if ev.action == "pull" else "in the registry"
            self._line(f"{ev.short} {ev.index}/{ev.total}: already {where}")
        elif ev.kind == "done":
            self.close()
            self._line(f"{'Pulled' if ev.action == 'pull' else 'Pushed'} {ev.ref} in {ev.seconds or 0:.1f}s")

    def close(self) -> None:
        """End the bar on show (a failed transfer leaves it as it got)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _logged(ev: TransferEvent) -> None:
    what = f"{ev.action} {ev.ref}: layer {ev.index}/{ev.total} {ev.digest}"
    if ev.kind == "layer":
        log("debug", "%s (%s bytes)", what, ev.size)
    elif ev.kind == "exists":
        log("debug", "%s is there already", what)
    elif ev.kind == "layer_done":
        log("debug", "%s done in %.2fs", what, ev.seconds or 0.0)
    elif ev.kind == "done":
        log("info", "%s %s done in %.2fs", ev.action, ev.ref, ev.seconds or 0.0)


class Emitter:
    """Every event to the logger, and to the display or callable asked for.

    ``layer``/``bytes``/``layer_done``/``exists``/``done`` make the events
    (``layer_done`` with the time since ``layer``); ``close()`` ends a
    display left open by a failure.
    """

    def __init__(self, progress: TransferProgress, action: Literal["pull", "push"], ref: str) -> None:
        self.action = action
        self.ref = ref
        self._started = time.monotonic()
        self._layer_started = self._started
        self._display = Display() if progress is True else None
        self._sink: Callable[[TransferEvent], None] | None = (
            self._display if self._display is not None else progress if callable(progress) else None
        )

    def emit(self, kind: Any, **fields: Any) -> None:
        ev = TransferEvent(kind, self.action, self.ref, **fields)
        if kind != "bytes":
            _logged(ev)
        if self._sink is not None:
            self._sink(ev)

    def layer(self, index: int, total: int, digest: str, size: int | None) -> Callable[[int], None]:
        """A layer starts moving; returns what to call with the bytes moved so far."""
        self._layer_started = time.monotonic()
        self.emit("layer", index=index, total=total, digest=digest, size=size)
        if self._sink is None:
            return lambda done: None

        def moved(done: int) -> None:
            self.emit("bytes", index=index, total=total, digest=digest, size=size, done=done)

        return moved

    def layer_done(self, index: int, total: int, digest: str, size: int | None) -> None:
        seconds = time.monotonic() - self._layer_started
        self.emit("layer_done", index=index, total=total, digest=digest, size=size, seconds=seconds)

    def exists(self, index: int, total: int, digest: str, size: int | None) -> None:
        self.emit("exists", index=index, total=total, digest=digest, size=size)

    def done(self) -> None:
        self.emit("done", seconds=time.monotonic() - self._started)

    def close(self) -> None:
        if self._display is not None:
            self._display.close()


__all__ = ["TransferEvent", "TransferProgress", "Display", "Emitter"]
