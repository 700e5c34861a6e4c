"""The command line's grammar: every command, its options and its help, for argparse.

Building the parser loads argparse and nothing of the library: ``--help``
costs no more than that, and each command's module (named in COMMANDS) is
imported only when that command runs.
"""

from __future__ import annotations

import argparse

from pylxcore import __version__
from pylxcore.cli.output import EXIT_ERROR, EXIT_NOT_RUN

TYPE_CHECKING = False  # (typing costs ``--help`` milliseconds)
if TYPE_CHECKING:
    from typing import Any, Callable

    Define = Callable[[argparse.ArgumentParser], None]

def parse_signal(text: str) -> int:
    """A signal by name ("TERM", "SIGTERM") or number, for argparse: the library's rule."""
    from pylxcore.errors import SpecError  # (only kill -s loads the library's signal names)
    from pylxcore.runtime.signals import signal_number

    try:
        return signal_number(text)
    except SpecError as err:
        raise argparse.ArgumentTypeError(err.reason) from None


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or json: one JSON object per line")


def _env_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable (-e KEY takes ours)")


def _stop_timeout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=float, default=10, metavar="SECS",
                   help="seconds to wait before SIGKILL (default 10)")


def _names(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", metavar="NAME", nargs="+")


# -- one function per command: its arguments ---------------------------------


def _build(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE",
                   help="the image's YAML (or a folder holding image.yaml); its folder is the context")
    p.add_argument("-t", "--tag", action="append", metavar="NAME:TAG",
                   help="name the image (instead of the YAML's name); may be repeated")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the image id")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print its name")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", metavar="NAME", help="the container's name (default: px-<random>)")
    _env_option(p)
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind-mount a host path (:ro read-only)")
    p.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, like 64M")
    p.add_argument("--cpus", type=float, metavar="N", help="CPU limit as a fraction of CPUs, like 0.5")
    p.add_argument("--pids", "--pids-limit", dest="pids", type=int, metavar="N", help="most processes")
    p.add_argument("--network", choices=("none", "host"), default="none", help="none (default) or host")
    p.add_argument("--userns", action="store_true", default=None,
                   help="in a user namespace: its root is an unprivileged host uid")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("-u", "--user", metavar="USER", help="user[:group] (name or number) to run as")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="max-size=SIZE (default 10m; -1: no cap) or max-file=N (default 3): log rotation")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER,
                   help="command and arguments (default: the image's cmd)")


def _ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="all containers, not only running ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    _format_option(p)


def _exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="feed our stdin to the command")
    _env_option(p)
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory")
    p.add_argument("-u", "--user", metavar="USER", help="user[:group] to run as")
    p.add_argument("name", metavar="NAME")
    p.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER, help="the command and its arguments")


def _logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the container exits")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines (per stream with -f)")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("name", metavar="NAME")


def _stop(p: argparse.ArgumentParser) -> None:
    _stop_timeout_option(p)
    _names(p)


def _kill(p: argparse.ArgumentParser) -> None:
    # A string default goes through ``type`` too, so the library names the signal.
    p.add_argument("-s", "--signal", type=parse_signal, default="KILL", metavar="SIG",
                   help="signal name or number (default KILL)")
    _names(p)


def _rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill running containers first")
    _names(p)


def _images(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    _format_option(p)


def _rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="untag even when a container uses it")
    p.add_argument("refs", metavar="REF", nargs="+")


def _tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="NEW")


def _inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", choices=("container", "image"), help="only look for this kind")
    p.add_argument("names", metavar="NAME|REF", nargs="+")


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _save(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="PATH", required=True)
    p.add_argument("--format", choices=("oci-archive", "oci"), default="oci-archive")


def _load(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", metavar="PATH", required=True)
    p.add_argument("-t", "--tag", metavar="NAME:TAG", help="name the image (default: the archive's own name)")


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="PATH", required=True)
    p.add_argument("--format", choices=("lxc", "incus", "rootfs", "oci", "oci-archive"), required=True)


def _stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", metavar="NAME", nargs="*")
    _format_option(p)


def _completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash",))


# name: (the module of pylxcore.cli that runs it as cmd_NAME, help, its arguments,
# the exit code of a failure). In the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str, Define, int]] = {
    "build": ("images", "build an image from its YAML file", _build, EXIT_ERROR),
    "run": ("run", "create and start a container", _run, EXIT_NOT_RUN),
    "ps": ("containers", "list containers", _ps, EXIT_ERROR),
    "exec": ("run", "run a command in a running container", _exec, EXIT_NOT_RUN),
    "logs": ("containers", "show a container's output", _logs, EXIT_ERROR),
    "start": ("containers", "start stopped containers", _names, EXIT_ERROR),
    "stop": ("containers", "stop running containers (SIGTERM, then SIGKILL)", _stop, EXIT_ERROR),
    "restart": ("containers", "restart containers", _stop, EXIT_ERROR),
    "kill": ("containers", "send a signal to containers", _kill, EXIT_ERROR),
    "rm": ("containers", "remove containers", _rm, EXIT_ERROR),
    "images": ("images", "list images", _images, EXIT_ERROR),
    "rmi": ("images", "remove images", _rmi, EXIT_ERROR),
    "tag": ("images", "give an image another name", _tag, EXIT_ERROR),
    "inspect": ("containers", "show containers or images as JSON", _inspect, EXIT_ERROR),
    "prune": ("images", "remove stopped containers, untagged images and unused layers", _nothing, EXIT_ERROR),
    "save": ("images", "write an image as an OCI archive (or layout directory)", _save, EXIT_ERROR),
    "load": ("images", "import an OCI layout, oci-archive or docker save archive", _load, EXIT_ERROR),
    "export": (
        "images",
        "write an image for another engine: lxc, incus, rootfs, oci or oci-archive"
        " (unlike docker export, this exports an image, not a container)",
        _export,
        EXIT_ERROR,
    ),
    "stats": ("containers", "one snapshot of containers' resource use", _stats, EXIT_ERROR),
    "completion": ("completion", "print a shell completion script", _completion, EXIT_ERROR),
}


def _unwrapped(*, prog: str) -> argparse.HelpFormatter:
    """The formatter argparse makes for itself while a parser is built (one
    per argument, to check it): nothing people read, so no need to ask the
    terminal's width, which costs an import of shutil (~2 ms)."""
    return argparse.HelpFormatter(prog, width=10_000)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that keeps what it is given, in public attributes:
    ``arguments`` (each option and positional, as add_argument returned it)
    and ``commands`` (each sub-command's parser, by name). The completion
    script and the docs' test read them. Its usage and help are argparse's,
    as wide as the terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []  # (before __init__: it adds -h)
        self.commands: dict[str, Parser] = {}
        kwargs.setdefault("formatter_class", _unwrapped)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """argparse's add_argument; the action is kept in ``arguments`` too."""
        action = super().add_argument(*args, **kwargs)
        self.arguments.append(action)
        return action

    def format_usage(self) -> str:
        """The usage line, as wide as the terminal (the text people read)."""
        self.formatter_class = argparse.HelpFormatter
        return super().format_usage()

    def format_help(self) -> str:
        """The help text, as wide as the terminal (the text people read)."""
        self.formatter_class = argparse.HelpFormatter
        return super().format_help()


def build_parser(only: str | None = None) -> Parser:
    """The whole command line: global options, then one sub-command. With
    ``only``, that sub-command alone: all that parsing a command line whose
    command is known needs (the others' ~100 argparse objects and their
    translations cost milliseconds of every run)."""
    parser = Parser(
        prog="pylxcore",
        description="Docker's core ideas on LXC, without a daemon: build images, run containers.",
    )
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="the store root (default: $PYLXCORE_ROOT, else /var/lib/pylxcore)")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show tracebacks and the library's debug log")
    parser.add_argument("--version", action="version", version=f"pylxcore {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for name, (group, help_text, define, error_code) in COMMANDS.items():
        if only is not None and name != only:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        # The global options are accepted after the command too ("pylxcore ps
        # --root R"), unlisted; SUPPRESS keeps the value given before it.
        p.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.set_defaults(group=group, error_code=error_code)
        define(p)
        parser.commands[name] = p
    return parser


def command_word(argv: list[str]) -> str | None:
    """The command of ``argv`` when nothing but ``--root DIR`` and ``--debug``
    comes before it and it names a command; else None (then the whole parser
    reads ``argv``, and says what is wrong with it)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root":
            i += 2
        elif arg == "--debug" or arg.startswith("--root="):
            i += 1
        else:
            return arg if arg in COMMANDS else None
    return None
