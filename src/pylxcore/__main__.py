"""``python -m pylxcore`` and the ``pylxcore`` command: a recorded build's replay, else the command line."""

from __future__ import annotations

import sys


def main() -> int:
    """The command line. A ``build`` whose every recorded input still holds is
    answered from its record (build/record.py) before the library, and its
    ~75 ms of imports, loads. Any other build runs for real inside a
    recording session (build/recorder.py): records come from the real path only."""
    from pylxcore.build.record import replay

    argv = sys.argv[1:]
    try:
        code = replay(argv)
    except BrokenPipeError:  # ``pylxcore build F | head -1``: as the command line ends then
        from pylxcore.cli.output import EXIT_ERROR, quiet_stdout

        quiet_stdout()
        return EXIT_ERROR
    if code is not None:
        return code
    from pylxcore.cli import main as cli_main
    from pylxcore.cli.parser import command_word

    if command_word(argv) != "build":
        return cli_main(argv)  # only a build is recorded: nothing else wraps its streams
    from pylxcore.build.recorder import Session

    with Session(argv) as session:
        code = cli_main(argv)
        session.save(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
