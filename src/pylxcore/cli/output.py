"""What the command line prints: exit codes, tables, durations, JSON lines and the one-line error.

Standard library only, and little of it at import: every command loads this
module, ``--help`` included.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # (typing costs ``--help`` milliseconds; attrs loads it for the rest)
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any, Callable, Iterable, Sequence, TextIO

# Docker's exit codes.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUN = 125  # run/exec: pylxcore failed before the command ran
EXIT_CANNOT_EXECUTE = 126  # run: the command is there but cannot be executed
EXIT_NOT_FOUND = 127  # run: the command is not in the container
EXIT_INTERRUPTED = 130


def write_bytes(stream: TextIO, data: bytes) -> None:
    """Write raw bytes from a container to ``stream`` (stdout or stderr) at once."""
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a test's capture, a notebook: text only
        stream.write(data.decode("utf-8", "replace"))
    else:
        buffer.write(data)
        buffer.flush()
    stream.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns like ``docker ps``: a header line, then one line per row."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """A rough duration, worded as Docker does ("5 seconds", "About an hour", "3 days")."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def ago(when: float | None) -> str:
    """``human_duration`` since the unix time ``when`` ("5 seconds ago"); "" for none."""
    return "" if not when else human_duration(time.time() - when) + " ago"


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def key_values(items: Sequence[str], allowed: Sequence[str], command: str) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` options by key (a key given again adds a value:
    any of them matches), for ``command``, whose filters are ``allowed``.
    Raises SpecError naming the bad option."""
    from pylxcore.errors import SpecError  # (only a command with --filter needs it)

    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise SpecError(f"bad format of filter (expected name=value): {item!r}", key="--filter")
        if key not in allowed:
            raise SpecError(f"invalid filter {key!r} ({command} takes {', '.join(allowed)})", key="--filter")
        out.setdefault(key, []).append(value)
    return out


def print_json_lines(items: Iterable[dict[str, Any]]) -> None:
    """``--format json``: one JSON object per line, as ``docker ps --format json``."""
    import json  # (only --format json needs it)

    for item in items:
        print(json.dumps(item))


def report_error(err: BaseException, debug: bool) -> None:
    """One line on stderr (and the traceback first with ``--debug``)."""
    from pylxcore.errors import PylxcoreError  # (only a failure needs it)

    if debug:
        import traceback  # (only --debug needs it)

        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    if isinstance(err, PylxcoreError):
        text = str(err).strip()
    else:
        text = f"{type(err).__name__}: {err}".strip()
        if not debug:
            text += " (--debug shows the traceback)"
    first = text.splitlines()[0] if text else type(err).__name__
    print(f"pylxcore: error: {first}", file=sys.stderr)


def each(args: Namespace, action: Callable[[str], object]) -> int:
    """Apply ``action`` to every name in ``args.names``; report each failure
    and carry on, like ``docker stop a b``. 1 if any failed."""
    from pylxcore.errors import PylxcoreError  # (here: --help need not load it)

    code = EXIT_OK
    for name in args.names:
        try:
            action(name)
        except PylxcoreError as err:
            report_error(err, args.debug)
            code = EXIT_ERROR
        else:
            print(name)
    return code


def quiet_stdout() -> None:
    """After a closed pipe (``pylxcore ps | head``): point stdout at /dev/null so
    the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
