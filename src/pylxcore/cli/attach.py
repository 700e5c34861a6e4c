"""Following a container's output on ours, stdout to stdout and stderr to stderr (run attached, logs -f)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

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
    container: Container, *, tail: int | None = None, timestamps: bool = False, since: float | None = None
) -> None:
    """Stream the container's stdout to ours and its stderr to ours until it
    exits (``since``: only what it wrote from that unix time on). Raises what
    the library raises while following."""
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
    for thread in threads:
        thread.start()
    for thread in threads:
        # With a timeout: a Ctrl-C that the kernel hands to one of the pump
        # threads would not wake a join() without one, and only the main
        # thread raises KeyboardInterrupt; it does so at its next wake-up.
        while thread.is_alive():
            thread.join(0.1)
    if failures:
        raise failures[0]
