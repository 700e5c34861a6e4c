"""The supervisor as a program: ``python -I -S .../pylxcore/supervisor/__main__.py
ARGS`` (see main for the ARGS; pylxcore.runtime.launch runs it so).

``-I -S``: a supervisor must not depend on the caller's environment or
site-packages, and site costs milliseconds. Neither puts this package's
parent on sys.path, so the program does (last: the standard library is never
shadowed). Importing pylxcore costs nothing: its names load on first use.
"""

import sys

if __name__ == "__main__":
    sys.path.append(__file__.rsplit("/", 3)[0])  # .../PARENT/pylxcore/supervisor/__main__.py
    from pylxcore.supervisor.main import main

    sys.exit(main(sys.argv))
