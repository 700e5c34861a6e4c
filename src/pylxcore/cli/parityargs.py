"""The arguments of docker's parity commands (cp, commit, top, history,
rename, stats, update, system, volume) for pylxcore.cli.parser: argparse
only, nothing of the library (see the parser's docstring for why)."""

from __future__ import annotations

import argparse

# (these names have no leading underscore: pylxcore.cli.parser takes them)


def names(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", metavar="NAME", nargs="+")


def cp(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--archive", action="store_true", help="keep owners (default: the copier's, root)")
    p.add_argument("-L", "--follow-link", action="store_true", help="copy what a symlink SRC leads to")
    p.add_argument("src", metavar="SRC", help="CONTAINER:PATH, a local path, or - (a tar on stdin)")
    p.add_argument("dest", metavar="DEST", help="CONTAINER:PATH, a local path, or - (a tar on stdout)")


def commit(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--message", metavar="TEXT", help="a note kept in the image's history")
    p.add_argument("-a", "--author", metavar="NAME", help="the author kept in the image")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,"
                        " VOLUME, WORKDIR) applied to the image's config; may be repeated")
    p.add_argument("-p", "--pause", action=argparse.BooleanOptionalAction, default=True,
                   help="pause the container while its files are copied (default: yes)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("repository", metavar="REPO[:TAG]", nargs="?")


def top(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("ps_args", metavar="PS-OPTIONS", nargs=argparse.REMAINDER, help="ps options (default -ef)")


def stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stream", action="store_true", help="print one reading and exit (default: refresh"
                   " every second until Ctrl-C, or until the named containers have stopped)")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (default), json (one object a line), or a Go template:"
                        " '{{.Name}} {{.CPUPerc}}'")
    p.add_argument("names", metavar="NAME", nargs="*")


def update(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, like 128M")
    p.add_argument("--memory-swap", metavar="SIZE", help="memory plus swap, like 256M (-1: unlimited swap)")
    p.add_argument("--cpus", metavar="N", help="CPU limit as a fraction of CPUs, like 1.5")
    p.add_argument("-c", "--cpu-shares", metavar="N", help="relative CPU weight (2 to 262144)")
    p.add_argument("--cpuset-cpus", metavar="CPUS", help="which CPUs, like 0-1 or 0,2")
    p.add_argument("--pids-limit", metavar="N", help="most processes (-1: no limit)")
    p.add_argument("--restart", metavar="POLICY",
                   help="restart policy: no, always, unless-stopped, on-failure[:N] (taken at the next exit)")
    names(p)


def rename(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", metavar="CONTAINER")
    p.add_argument("new", metavar="NEW_NAME")


def history(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only the image's id")
    p.add_argument("--no-trunc", action="store_true", help="whole ids and steps")
    p.add_argument("image", metavar="IMAGE")


def prune_options(p: argparse.ArgumentParser, *, every: str | None) -> None:
    p.add_argument("-f", "--force", action="store_true", help="do not ask first")
    if every is not None:
        p.add_argument("-a", "--all", action="store_true", help=every)


def system(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="system_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser("df", help="what images and containers take on disk")
    sub.add_parser("info", help="the store and the host")
    prune = sub.add_parser("prune", help="remove stopped containers, dangling images and unused layers")
    prune_options(prune, every="every image no container uses, not only untagged ones")
    prune.add_argument("--volumes", action="store_true", help="volumes no container uses too")


def volume(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="volume_command", metavar="SUBCOMMAND", required=True)
    c = sub.add_parser("create", help="make a volume (an existing one is left as it is)")
    c.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label; may be repeated")
    c.add_argument("name", metavar="NAME", nargs="?", help="default: a random name")
    ls = sub.add_parser("ls", help="list volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="only names")
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="dangling=true|false, name=PART, label=KEY[=VALUE]")
    ls.add_argument("--format", metavar="TEMPLATE", help="a Go template, like '{{.Name}}'")
    rm = sub.add_parser("rm", help="remove volumes no container uses")
    rm.add_argument("-f", "--force", action="store_true", help="no error for a volume that is not there")
    names(rm)
    inspect = sub.add_parser("inspect", help="show volumes as JSON")
    inspect.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go template, like '{{.Mountpoint}}'")
    names(inspect)
    prune_options(sub.add_parser("prune", help="remove every volume no container uses"), every=None)
