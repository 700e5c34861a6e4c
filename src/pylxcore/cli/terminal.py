"""``exec -i`` and ``exec -t``: our stdin streamed to the command, and our
terminal made the command's (raw, its size followed, Ctrl-C delivered)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from pylxcore.cli.output import write_bytes

if TYPE_CHECKING:
    from pylxcore.runtime.exec import ExecStream


def _feed(stream: ExecStream, fd: int) -> None:
    """Copy what comes on ``fd`` to the command's input until either ends."""
    try:
        while data := os.read(fd, 65536):
            stream.write(data)
    except Exception:  # noqa: BLE001  (the command has ended: nothing to say)
        return
    stream.close_stdin()


def _give(stream: ExecStream, data: bytes) -> None:
    """Send ``data`` to the command, then end its input."""
    try:
        stream.write(data)
    except Exception:  # noqa: BLE001  (the command has ended: nothing to say)
        return
    stream.close_stdin()


def relay(stream: ExecStream, *, interactive: bool, tty: bool) -> int:
    """Show the command's output as it comes; with ``interactive``, send it
    our stdin as it comes; with ``tty`` and a terminal as our stdin, put that
    terminal in raw mode (every key, Ctrl-C too, goes to the command) and
    keep the command's terminal as big as ours. The command's exit code."""
    try:
        stdin: int | None = sys.stdin.fileno()
    except (OSError, ValueError):  # (io.UnsupportedOperation is both): no descriptor, as in a test
        stdin = None
    saved: Any = None
    previous: Any = None
    if tty and stdin is not None and os.isatty(stdin):
        import termios  # (only a terminal needs these)
        import tty as ttys

        def follow_size(*_: object) -> None:
            assert stdin is not None
            try:
                size = os.get_terminal_size(stdin)
                stream.resize(size.lines, size.columns)
            except OSError:
                pass

        saved = termios.tcgetattr(stdin)
        follow_size()
        previous = signal.signal(signal.SIGWINCH, follow_size)
        if interactive:
            ttys.setraw(stdin)
    try:
        if interactive and stdin is not None:
            threading.Thread(target=_feed, args=(stream, stdin), daemon=True).start()
        elif interactive:  # a stream without a descriptor (a test's): all of it, then its end
            data = sys.stdin.buffer.read()
            threading.Thread(target=_give, args=(stream, data), daemon=True).start()
        for name, chunk in stream:
            write_bytes(sys.stdout if name == "stdout" else sys.stderr, chunk)
    except KeyboardInterrupt:
        try:
            os.kill(stream.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stream.wait()
        raise
    finally:
        if saved is not None and stdin is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous)
    return stream.wait()
