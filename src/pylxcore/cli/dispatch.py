"""Running one command line: parse it, call its command, turn what it raised into an exit code.

Each command is a function ``cmd_NAME(args) -> exit code`` in the module of
pylxcore.cli that parser.COMMANDS names for it; that module is imported only
when its command runs, so a command loads only what it needs.
"""

from __future__ import annotations

import importlib
import sys

from pylxcore.cli.output import (
    EXIT_CANNOT_EXECUTE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_NOT_RUN,
    EXIT_OK,
    EXIT_USAGE,
    quiet_stdout,
    report_error,
)
from pylxcore.cli.parser import build_parser, command_word

TYPE_CHECKING = False  # (typing costs ``--help`` milliseconds)
if TYPE_CHECKING:
    import argparse
    from typing import Callable

    Command = Callable[[argparse.Namespace], int]


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(only=command_word(argv))
    try:
        args = parser.parse_args(argv)
        if args.command_name == "exec" and not args.command:
            parser.commands["exec"].error("a command is required after NAME")
    except SystemExit as stop:  # --help, --version, usage errors
        return stop.code if isinstance(stop.code, int) else (EXIT_OK if stop.code is None else EXIT_USAGE)
    debug_log = _DebugLog() if args.debug else None
    try:
        module = importlib.import_module(f"pylxcore.cli.{args.group}")
        command: Command = getattr(module, "cmd_" + args.command_name)
        return command(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        quiet_stdout()
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001  (one line, not a traceback, unless --debug)
        report_error(err, args.debug)
        return _exit_code(err, args.error_code)
    finally:
        if debug_log is not None:
            debug_log.close()


def _exit_code(err: Exception, code: int) -> int:
    """As docker: a program that cannot start makes ``run`` exit 127 (not in
    the container) or 126 (not executable) instead of 125, and ``exec``
    126 instead of 1."""
    # (only a failed run or exec needs these)
    from pylxcore.runtime.programs import EXEC_FAILED, PROGRAM_NOT_EXECUTABLE, PROGRAM_NOT_FOUND

    detail = getattr(err, "detail", None)
    if detail == EXEC_FAILED:
        return EXIT_CANNOT_EXECUTE
    if code == EXIT_NOT_RUN and detail == PROGRAM_NOT_FOUND:
        return EXIT_NOT_FOUND
    if code == EXIT_NOT_RUN and detail == PROGRAM_NOT_EXECUTABLE:
        return EXIT_CANNOT_EXECUTE
    return code


class _DebugLog:
    """``--debug``: the library's log on stderr while the command runs;
    ``close()`` leaves the logger as it found it (main() runs in tests too)."""

    def __init__(self) -> None:
        import logging  # (only --debug needs it)

        self._logger = logging.getLogger("pylxcore")
        self._level = self._logger.level
        self._handler: logging.Handler = logging.StreamHandler(sys.stderr)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.DEBUG)

    def close(self) -> None:
        """Stop showing the log."""
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)
