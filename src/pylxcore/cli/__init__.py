"""The ``pylxcore`` command line: Docker's main commands over the same library.

    pylxcore build examples/web/image.yaml
    pylxcore run -d --name web1 -m 64M web:1.0
    pylxcore ps
    pylxcore exec web1 cat /www/health
    pylxcore rm -f web1

One module per job, and a command loads only its own:

- ``warm``        what ``pylxcore`` runs first: hand the command line to a
                  warm command server's child, else run it here (stdlib only)
- ``warmserver``  the command server: the library loaded once, a fork per command
- ``parser``      the grammar: every command, option and help text (argparse only)
- ``dispatch``    one command line: parse, run the command, exit code for what it raised
- ``output``      exit codes, tables, durations, JSON lines, the one-line error
- ``containers``  ps, logs, start, stop, restart, kill, rm, inspect, stats
- ``run``         run and exec: options to library values, output streamed, Ctrl-C
- ``attach``      following a container's output on ours (run attached, logs -f)
- ``images``      build, images, rmi, tag, save, load, export, prune
- ``completion``  the bash completion script
- ``files``       cp, diff, commit, top, export (a container's files)
- ``parity``      create, wait, pause, unpause, rename, history, info, version, the
                  image/container/system groups and the prunes
- ``volumes``     volume create, ls, rm, inspect, prune
- ``gotemplate``  the Go-template subset of --format and inspect -f (pure)
- ``dockershape`` containers and images as Docker's documents, for templates
- ``psfilter``, ``imagefilter``, ``timespec``  ps and images --filter, --since/--until
- ``registry``    pull, push, login, logout
- ``networks``    network create, ls, rm, inspect, connect, disconnect, prune; port; -p
- ``events``      events (the store's events log, followed)
- ``terminal``    a terminal in raw mode for exec -it, its size followed

Exit codes follow Docker's: 0 for success, 1 for an error, 2 for bad usage,
125 when ``run``/``create`` failed before the command ran (otherwise they pass
the command's own exit code through), 126 when the command cannot be
executed (``exec``: cannot start), 127 when the command is not in the
container, 130 on Ctrl-C. docs/cli.md is the reference.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    # Imported here: ``import pylxcore.cli.output`` (say) need not load argparse.
    from pylxcore.cli.dispatch import run

    return run(argv)


__all__ = ["main"]
