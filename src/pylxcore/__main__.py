"""``python -m pylxcore`` and the ``pylxcore`` command: a warm server's child
runs the command line when one serves (cli/warm.py), else it runs here: a
recorded build's replay, else the command line."""

from __future__ import annotations

import sys


def main() -> int:
    """The command line, run by a warm command server when one serves us
    (the library then needs no loading here), else here; its exit code.

    When a server's child ran it, this process ends at once with that code
    (``exit_now``): it only waited, holds nothing to clean up, and the
    interpreter's teardown would add ~2 ms to every command."""
    from pylxcore.cli.warm import call, exit_now

    argv = sys.argv[1:]
    code = call(argv)
    if code is None:
        return run_command(argv)
    exit_now(code)


def run_command(argv: list[str]) -> int:
    """Run the command line ``argv`` in this process; return its exit code.
    A ``build`` whose every recorded input still holds is answered from its
    record (build/record.py) before the library, and its ~75 ms of imports,
    loads. Any other build runs for real inside a recording session
    (build/recorder.py): records come from the real path only."""
    from pylxcore.build.record import replay

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
