"""The supervisor program's entry (see __main__ for how it is run): ``CTRDIR``
starts the supervisor of the container there, ``--zygote NAME
CONTAINERS_DIR`` the zygote of a store (see zygote)."""

from __future__ import annotations

import os
import signal

from pylxcore.supervisor.protocol import OK
from pylxcore.supervisor.supervise import fork_supervisor

USAGE = b"usage: pylxcore-supervisor CTRDIR | --zygote NAME CONTAINERS_DIR\n"


def main(argv: list[str]) -> int:
    """Run the program with ``argv`` (its name first). 0 once the container
    runs (or the zygote listens); else 1, with the answer on stderr (see
    protocol); 2 for a wrong command line. Raises nothing."""
    # Once, here, for this process and all it forks: a zygote's supervisors
    # inherit these at no cost to each start (the signal module's wrappers
    # touch enum objects, and every page a fork touches is copied). A Ctrl-C
    # or hang-up in the starter's terminal must not reach a supervisor or its
    # container; and a starter that ignores SIGCHLD (which posix_spawn keeps
    # ignored) must not leave children that nobody can wait for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if len(argv) == 4 and argv[1] == "--zygote":
        # socket costs a supervisor ~4 ms to import; only the zygote needs it.
        from pylxcore.supervisor.zygote import zygote

        try:
            return zygote(argv[2], argv[3])
        except OSError as err:
            os.write(2, f"error: cannot start a zygote: {err}\n".encode())
            return 1
    if len(argv) != 2 or argv[1].startswith("-"):
        os.write(2, USAGE)
        return 2
    try:
        answer = fork_supervisor(argv[1])
    except OSError as err:
        answer = f"error: cannot start a supervisor: {err}".encode()
    if answer == OK:
        return 0
    os.write(2, answer + b"\n")
    return 1
