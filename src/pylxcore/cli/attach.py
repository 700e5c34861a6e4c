"""Following a container's output on ours, stdout to stdout and stderr to stderr (run attached, logs -f)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Callable, TextIO

from pylxcore.cli.output import write_bytes

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


def _pump(
    container: Container,
    stream: str,
    out: TextIO,
    tail: int | None,
    timestamps: bool,
    failures: list[BaseException],
    since: float | None = None,
) -> None:
    """Copy one stream of the container's log to ``out`` until it exits (a thread)."""
    try:
        chunks = container.logs(
            follow=True, stdout=stream == "stdout", stderr=stream == "stderr", tail=tail,
            timestamps=timestamps, since=since,
        )
        for chunk in chunks:
            write_bytes(out, chunk)
    except BaseException as err:  # noqa: BLE001  (handed to the main thread, which raises it)
        failures.append(err)


def follow_logs(
    container: Container,
    *,
    tail: int | None = None,
    timestamps: bool = False,
    since: float | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> None:
    """Stream the container's stdout to ours and its stderr to ours until it
    exits (``since``: only what it wrote from that unix time on). Ctrl-C
    raises KeyboardInterrupt, unless ``on_interrupt`` is given: then it is
    called and the output goes on (``docker run``'s signal proxy: the
    container's process decides what Ctrl-C does), up to the third Ctrl-C,
    which raises. Raises what the library raises while following."""
    failures: list[BaseException] = []
    threads = [
        threading.Thread(
            target=_pump,
            args=(container, stream, out, tail, timestamps, failures, since),
            name=f"pylxcore-logs-{stream}",
            daemon=True,
        )
        for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr))
    ]
    # Ctrl-C counted by a handler of our own, set before any output shows,
    # not caught as KeyboardInterrupt: that can surface at any line, outside
    # any try. (Signal handlers can only be set from the main thread:
    # elsewhere, Ctrl-C raises at once.)
    pressed: list[int] = []
    previous = None
    if on_interrupt is not None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        for thread in threads:
            thread.start()
        handled = 0
        for thread in threads:
            # With a timeout: a Ctrl-C that the kernel hands to one of the pump
            # threads would not wake a join() without one; the handler runs in
            # the main thread at its next wake-up.
            while thread.is_alive():
                thread.join(0.1)
                while handled < len(pressed):
                    handled += 1
                    if handled >= 3:
                        raise KeyboardInterrupt
                    assert on_interrupt is not None
                    on_interrupt()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if failures:
        raise failures[0]
