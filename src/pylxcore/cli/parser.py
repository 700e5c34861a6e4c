"""The command line's grammar: every command, its options and its help, for argparse.

Building the parser loads argparse and nothing of the library: ``--help``
costs no more than that, and each command's module (named in COMMANDS) is
imported only when that command runs.
"""

from __future__ import annotations

import argparse

from pylxcore import __version__
from pylxcore.cli.output import EXIT_ERROR, EXIT_NOT_RUN
from pylxcore.cli.parityargs import commit as _commit
from pylxcore.cli.parityargs import cp as _cp
from pylxcore.cli.parityargs import history as _history
from pylxcore.cli.parityargs import names as _names
from pylxcore.cli.parityargs import prune_options as _prune_options
from pylxcore.cli.parityargs import rename as _rename
from pylxcore.cli.parityargs import stats as _stats
from pylxcore.cli.parityargs import system as _system
from pylxcore.cli.parityargs import top as _top
from pylxcore.cli.parityargs import update as _update
from pylxcore.cli.parityargs import volume as _volume

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
    p.add_argument("-t", "--time", type=float, default=None, metavar="SECS",
                   help="seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10)")


# -- one function per command: its arguments ---------------------------------


def _build(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE|CONTEXT",
                   help="the image's YAML (or a folder holding image.yaml), or a Dockerfile or the"
                        " build context folder of one; the file's folder is the context")
    p.add_argument("-t", "--tag", action="append", metavar="NAME:TAG",
                   help="name the image (instead of the YAML's name); may be repeated")
    p.add_argument("-f", "--file", dest="dockerfile", metavar="DOCKERFILE",
                   help="the Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="a Dockerfile ARG's value; may be repeated")
    p.add_argument("--target", metavar="STAGE", help="build this stage of the Dockerfile (default: the last)")
    p.add_argument("--progress", choices=("auto", "plain"), default="auto",
                   help="how to show progress (both print plain steps)")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the image id")


def _detach_keys_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detach-keys", metavar="KEYS",
                   help="the keys that leave it running (default ctrl-p,ctrl-q)")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print its name")
    p.add_argument("-i", "--interactive", action="store_true", help="keep its stdin open (and feed it ours)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="run it on a terminal (with -i from a terminal: ours, raw, its size followed)")
    _detach_keys_option(p)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", metavar="NAME", help="the container's name (default: px-<random>)")
    _env_option(p)
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind-mount a host path (:ro read-only)")
    p.add_argument("-m", "--memory", metavar="SIZE", help="memory limit, like 64M")
    p.add_argument("--cpus", type=float, metavar="N", help="CPU limit as a fraction of CPUs, like 0.5")
    p.add_argument("--pids", "--pids-limit", dest="pids", type=int, metavar="N", help="most processes")
    p.add_argument("--network", metavar="NETWORK", default=None,
                   help="none (default; bridge with -p/-P), host, bridge, or a network's name")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOSTPORT:]PORT[/udp]",
                   help="publish a container port on the host (no HOSTPORT: a free one); ranges as"
                        " 8000-8002:80-82; may be repeated")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every port the image exposes, each on a free host port")
    p.add_argument("--hostname", metavar="NAME", help="the container's host name (default: its name)")
    p.add_argument("--network-alias", action="append", default=[], metavar="ALIAS",
                   help="another name it answers to on its network; may be repeated")
    p.add_argument("--ip", metavar="ADDRESS", help="its address on its network (a network of your own)")
    p.add_argument("--dns", action="append", default=[], metavar="ADDRESS",
                   help="a name server for its resolv.conf (default bridge only); may be repeated")
    p.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN",
                   help="a search domain for its resolv.conf; may be repeated")
    p.add_argument("--dns-option", action="append", default=[], metavar="OPTION",
                   help="a resolver option for its resolv.conf, like ndots:2; may be repeated")
    p.add_argument("--userns", action="store_true", default=None,
                   help="in a user namespace: its root is an unprivileged host uid")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("-u", "--user", metavar="USER", help="user[:group] (name or number) to run as")
    p.add_argument("--entrypoint", metavar="PROG",
                   help="run PROG instead of the image's entrypoint (and without its cmd); '' for none")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="max-size=SIZE (default 10m; -1: no cap) or max-file=N (default 3): log rotation")
    p.add_argument("--restart", metavar="POLICY",
                   help="no (default), on-failure[:N], always or unless-stopped: kept by its supervisor")
    p.add_argument("--health-cmd", metavar="CMD", help="a shell command: exit 0 when the container works")
    for what, default in (("interval", "30s"), ("timeout", "30s"), ("start-period", "0s")):
        p.add_argument(f"--health-{what}", metavar="DURATION",
                       help=f"the healthcheck's {what} (default {default})")
    p.add_argument("--health-retries", type=int, metavar="N",
                   help="failures in a row to be unhealthy (default 3)")
    p.add_argument("--no-healthcheck", action="store_true", help="turn off the image's healthcheck")
    p.add_argument("--read-only", action="store_true", help="mount its root filesystem read-only")
    p.add_argument("--tmpfs", action="append", default=[], metavar="DIR[:OPTIONS]",
                   help="mount a fresh tmpfs at DIR (options like size=16m); may be repeated")
    p.add_argument("--stop-signal", metavar="SIG",
                   help="what stop sends first (default: the image's, else TERM)")
    p.add_argument("--stop-timeout", type=float, metavar="SECS",
                   help="seconds stop waits before SIGKILL (default 10)")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label on the container; may be repeated")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER,
                   help="command and arguments (default: the image's cmd)")


def _network(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="network_command", metavar="SUBCOMMAND", required=True)
    c = sub.add_parser("create", help="make a bridge network")
    c.add_argument("--subnet", metavar="CIDR", help="e.g. 10.5.0.0/24 (default: a free private /24)")
    c.add_argument("--internal", action="store_true", help="no way out of the network")
    c.add_argument("name", metavar="NAME")
    ls = sub.add_parser("ls", help="list networks")
    ls.add_argument("-q", "--quiet", action="store_true", help="only names")
    _format_option(ls)
    _names(sub.add_parser("rm", help="remove networks (no container may be on them)"))
    _names(sub.add_parser("inspect", help="show networks as JSON"))
    for what, help_text in (("connect", "put a container on a network too"),
                            ("disconnect", "take a container off a network")):
        n = sub.add_parser(what, help=help_text)
        if what == "connect":
            n.add_argument("--alias", action="append", default=[], metavar="ALIAS",
                           help="another name it answers to there; may be repeated")
            n.add_argument("--ip", metavar="ADDRESS", help="its address there (default: a free one)")
        n.add_argument("network", metavar="NETWORK")
        n.add_argument("container", metavar="CONTAINER")
    sub.add_parser("prune", help="remove every network no container is on")


def _port(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("port", metavar="PORT[/PROTO]", nargs="?", help="only this container port")


def _start(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--attach", action="store_true", help="attach to its output (and its terminal)")
    p.add_argument("-i", "--interactive", action="store_true", help="with -a: feed it our stdin")
    _detach_keys_option(p)
    p.add_argument("--all-restartable", action="store_true",
                   help="start the containers with restart policy always, or unless-stopped and not stopped"
                   " by their user (for a host's boot: see docs/cli.md)")
    p.add_argument("names", metavar="NAME", nargs="*")


def _attach(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stdin", action="store_true", help="do not feed it our stdin")
    _detach_keys_option(p)
    p.add_argument("name", metavar="NAME")


def _events(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", metavar="TIME", help="from this time (unix seconds, RFC 3339, or 10m ago)")
    p.add_argument("--until", metavar="TIME", help="to this time, then stop (default: follow for ever)")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="container=NAME, event=ACTION, image=REF or type=container; may be repeated")
    _format_option(p)


def _ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="all containers, not only running ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep those matching: status, name, label, ancestor, exited, id (may be repeated)")
    p.add_argument("-n", "--last", type=int, metavar="N", help="the N newest containers (any state)")
    p.add_argument("-l", "--latest", action="store_true", help="the newest container (any state)")
    p.add_argument("-s", "--size", action="store_true", help="show the writable layer's size")
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (default), json (one object a line), or a Go template: '{{.Names}}',"
                        " 'table {{.ID}}\\t{{.Status}}'")


def _exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="feed our stdin to the command")
    p.add_argument("-t", "--tty", action="store_true",
                   help="run it on a terminal (with -i from a terminal: ours, raw, its size followed)")
    _env_option(p)
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory")
    p.add_argument("-u", "--user", metavar="USER", help="user[:group] to run as")
    p.add_argument("name", metavar="NAME")
    p.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER, help="the command and its arguments")


def _logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the container exits")
    p.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N lines (per stream with -f)")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    p.add_argument("--since", metavar="TIME", help="only output since TIME (a date, a unix time, 10m ago)")
    p.add_argument("--until", metavar="TIME", help="only output before TIME (same forms)")
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
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep those matching: dangling, label, reference, before, since (may be repeated)")
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (default), json (one object a line), or a Go template: '{{.Repository}}'")


def _rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="untag even when a container uses it")
    p.add_argument("refs", metavar="REF", nargs="+")


def _tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="NEW")


def _inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", choices=("container", "image"), help="only look for this kind")
    p.add_argument("-f", "--format", metavar="TEMPLATE",
                   help="a Go template over docker's document, like '{{.State.Status}} {{.State.ExitCode}}'")
    p.add_argument("names", metavar="NAME|REF", nargs="+")


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _save(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write it; '-' or none: stdout (when it is not a terminal)")
    p.add_argument("--format", choices=("oci-archive", "docker-archive", "oci", "lxc", "incus", "rootfs"),
                   default="oci-archive",
                   help="oci-archive (default), docker-archive (Docker 20.10 loads it), oci (a dir), or for"
                        " another engine (with -o): lxc (a dir), incus, rootfs")


def _load(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", metavar="PATH", help="the archive; '-' or none: stdin")
    p.add_argument("-t", "--tag", metavar="NAME:TAG", help="name the image (default: the archive's own name)")


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="CONTAINER|IMAGE")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write it (a container's tar: '-' or none is stdout)")
    p.add_argument("--format", choices=("lxc", "incus", "rootfs", "oci", "oci-archive", "docker-archive"),
                   help="deprecated (use save --format): export an IMAGE in this format; without it,"
                        " a CONTAINER's files as a tar")


def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")


def _tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP and unverified TLS for this registry")
    p.add_argument("--ca-file", metavar="PATH",
                   help="also trust this CA bundle (besides /etc/docker/certs.d/HOST/ and the system's)")


def _pull(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="NAME[:TAG|@DIGEST]", help="e.g. busybox, localhost:5000/team/web:1.0")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="pick this platform of an index")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the image id")
    _tls_options(p)


def _push(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="a local image (its name says where it goes)")
    p.add_argument("dest", metavar="DEST", nargs="?", help="push it under this name instead")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; print only the digest")
    _tls_options(p)


def _login(p: argparse.ArgumentParser) -> None:
    p.add_argument("registry", metavar="REGISTRY", nargs="?", default="docker.io", help="host[:port]")
    p.add_argument("-u", "--username", metavar="USER")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _tls_options(p)


def _logout(p: argparse.ArgumentParser) -> None:
    p.add_argument("registry", metavar="REGISTRY", nargs="?", default="docker.io", help="host[:port]")


def _completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash",))


def _image(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)
    _images(sub.add_parser("ls", help="list images"))
    _rmi(sub.add_parser("rm", help="remove images"))
    _prune_options(sub.add_parser("prune", help="remove dangling images"),
                   every="every image no container uses, not only untagged ones")
    _inspect(sub.add_parser("inspect", help="show images as JSON"))
    _history(sub.add_parser("history", help="an image's steps"))


# docker's ``container SUBCOMMAND``: the top-level command each one is.
CONTAINER_GROUP = ("ls", "rm", "prune", "inspect", "create", "start", "stop", "restart", "kill", "logs",
                   "attach", "wait", "pause", "unpause", "cp", "diff", "commit", "top", "export", "stats",
                   "port", "rename", "update")


def _container(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="container_command", metavar="SUBCOMMAND", required=True)
    for name in CONTAINER_GROUP:
        command = {"ls": "ps", "rm": "rm"}.get(name, name)
        if name == "prune":
            _prune_options(sub.add_parser("prune", help="remove every stopped container"), every=None)
            continue
        _group, help_text, define, error_code = COMMANDS[command]
        s = sub.add_parser(name, help=help_text)
        s.set_defaults(error_code=error_code)
        define(s)


# name: (the module of pylxcore.cli that runs it as cmd_NAME, help, its arguments,
# the exit code of a failure). In the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str, Define, int]] = {
    "build": ("images", "build an image from its YAML file or a Dockerfile", _build, EXIT_ERROR),
    "run": ("run", "create and start a container", _run, EXIT_NOT_RUN),
    "ps": ("containers", "list containers", _ps, EXIT_ERROR),
    "exec": ("run", "run a command in a running container", _exec, EXIT_ERROR),
    "attach": ("terminal", "attach to a running container's terminal, or its input and output", _attach,
               EXIT_ERROR),
    "logs": ("containers", "show a container's output", _logs, EXIT_ERROR),
    "start": ("containers", "start stopped containers", _start, EXIT_ERROR),
    "stop": ("containers", "stop running containers (SIGTERM, then SIGKILL)", _stop, EXIT_ERROR),
    "restart": ("containers", "restart containers", _stop, EXIT_ERROR),
    "kill": ("containers", "send a signal to containers", _kill, EXIT_ERROR),
    "rm": ("containers", "remove containers", _rm, EXIT_ERROR),
    "images": ("images", "list images", _images, EXIT_ERROR),
    "rmi": ("images", "remove images", _rmi, EXIT_ERROR),
    "tag": ("images", "give an image another name", _tag, EXIT_ERROR),
    "inspect": ("containers", "show containers or images as JSON", _inspect, EXIT_ERROR),
    "prune": ("images", "remove stopped containers, untagged images and unused layers", _nothing, EXIT_ERROR),
    "save": ("images", "write an image as an OCI or docker archive (or layout directory)", _save, EXIT_ERROR),
    "load": ("images", "import an OCI layout, oci-archive or docker save archive", _load, EXIT_ERROR),
    "export": (
        "files",
        "write a container's files as a tar (as docker export), or with --format an image for another"
        " engine: lxc, incus, rootfs, oci, oci-archive or docker-archive",
        _export,
        EXIT_ERROR,
    ),
    "cp": ("files", "copy files between a container and here (tar streams with -)", _cp, EXIT_ERROR),
    "diff": ("files", "list what a container changed in its image's files (A, C, D)", _name, EXIT_ERROR),
    "commit": ("files", "make a new image of a container's files and config", _commit, EXIT_ERROR),
    "top": ("files", "list a container's processes", _top, EXIT_ERROR),
    "create": ("parity", "create a container without starting it; prints its id", _run, EXIT_NOT_RUN),
    "wait": ("parity", "wait until containers exit; print their exit codes", _names, EXIT_ERROR),
    "pause": ("parity", "freeze every process of containers", _names, EXIT_ERROR),
    "unpause": ("parity", "thaw paused containers", _names, EXIT_ERROR),
    "rename": ("parity", "rename a stopped container", _rename, EXIT_ERROR),
    "history": ("parity", "show an image's steps", _history, EXIT_ERROR),
    "info": ("parity", "show the store and the host", _nothing, EXIT_ERROR),
    "version": ("parity", "show the versions of pylxcore, Python, liblxc and the kernel", _nothing,
                EXIT_ERROR),
    "image": ("parity", "manage images: ls, rm, prune, inspect, history", _image, EXIT_ERROR),
    "container": ("parity", "manage containers: ls, rm, prune, inspect and the rest", _container, EXIT_ERROR),
    "system": ("parity", "df, prune, info", _system, EXIT_ERROR),
    "volume": ("volumes", "manage volumes: create, ls, rm, inspect, prune", _volume, EXIT_ERROR),
    "pull": ("registry", "pull an image from a registry", _pull, EXIT_ERROR),
    "push": ("registry", "push an image to a registry", _push, EXIT_ERROR),
    "login": ("registry", "check and keep credentials for a registry (docker's config.json)", _login,
              EXIT_ERROR),
    "logout": ("registry", "forget a registry's credentials", _logout, EXIT_ERROR),
    "stats": ("resources", "containers' resource use (CPU, memory, pids), refreshed every second",
              _stats, EXIT_ERROR),
    "update": ("resources", "change containers' limits, at once when they run", _update, EXIT_ERROR),
    "network": ("networks", "manage bridge networks: create, ls, rm, inspect, connect, disconnect, prune",
                _network, EXIT_ERROR),
    "port": ("networks", "show where a container's ports are published", _port, EXIT_ERROR),
    "events": ("events", "show what happens to containers, as it happens", _events, EXIT_ERROR),
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

    def add_subparsers(self, **kwargs: Any) -> Any:
        """argparse's add_subparsers; the action (its ``choices``: each
        sub-command's parser, by name) is kept in ``arguments`` too."""
        action = super().add_subparsers(**kwargs)
        self.arguments.append(action)
        return action

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """argparse's parse_args, but an option no command takes is named as
        such ("unknown flag: -n"), as docker names it, rather than listed
        with the words after it (which argparse may have taken for names)."""
        parsed: argparse.Namespace
        parsed, extras = self.parse_known_args(args, namespace)
        flags = [word for word in extras if word.startswith("-") and word != "-"]
        if flags:
            self.error(f"unknown flag: {flags[0].split('=', 1)[0]}")
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

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
