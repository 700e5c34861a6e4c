"""``python -m pylxcore`` and the ``pylxcore`` command."""

from __future__ import annotations

import sys


def main() -> int:
    """The command line. An unchanged ``build`` is answered from its stamp
    (see _buildstamp) before the library, and its ~100 ms of imports, loads."""
    from pylxcore.build.stamp import fast_build

    code = fast_build(sys.argv[1:])
    if code is not None:
        return code
    from pylxcore.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
