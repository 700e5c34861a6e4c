"""The warm path of the ``pylxcore`` command: hand the command line to a
warm process that has the library loaded, instead of loading it again.

A fresh interpreter spends ~75 ms importing attrs, PyYAML, argparse, liblxc's
bindings and the library before a command does anything; the command itself
is often a few milliseconds (``ps``, a cached build) or ~30 ms (``run --rm``).
So ``pylxcore`` first asks the command server (cli/warmserver.py), a
process that imported all of that once, to fork a child that runs this very
command line: the same code (``pylxcore.__main__.run_command``), with this
process's standard streams (their descriptors, passed over the socket),
working directory, umask, environment and arguments. This process waits,
forwards the signals it gets (Ctrl-C, SIGTERM, SIGWINCH…) to that child and
exits with its exit code. Nothing runs in the server that would not run here.

When there is no server (the first command, or after it idled out), when
it runs other code than this process would (the library or the interpreter
changed), when it sees this process in other namespaces than its own, or
when ``PYLXCORE_WARM=0``: the command runs here, as it always did, and a
server is started in the background for the next one (``PYLXCORE_WARM=require``
makes these an error instead: for tests and for whoever wants to know).

The socket lies in ``/run/pylxcore/cli`` (root's alone, 0700), never in the
abstract namespace: a container that shares the host's network could reach
an abstract socket, and this one runs any command as root. The server also
checks that each client is its own uid. Only root uses it (pylxcore needs
root); anyone else runs the command here.

This module is imported by every command, before anything else: it uses the
stdlib's cheapest modules only (os, sys, socket, signal).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (typing would cost every command its import)
if TYPE_CHECKING:
    import socket

ENV = "PYLXCORE_WARM"  # "0": never use or start a server; "require": fail rather than run here
DIR_ENV = "PYLXCORE_WARM_DIR"  # where the socket lies (tests give each their own)
DEFAULT_DIR = "/run/pylxcore/cli"
# Environment variables the interpreter reads at start-up (the streams'
# encoding, the module path): a server started under other values would not
# run the command as a fresh interpreter here would, so they are part of its key.
_KEY_ENV = ("PYTHONPATH", "PYTHONIOENCODING", "PYTHONUTF8", "LC_ALL", "LC_CTYPE", "LANG")

# The server's first answer: the pid of the child that runs the command, or a refusal.
CHILD = b"P"
STALE = b"S"  # it runs other code: run the command here
REFUSED = b"R"  # another uid or other namespaces: run it here
# Its last answer: the child's exit status.
EXITED = b"X"  # + the exit code as 4 bytes
KILLED = b"K"  # + the number of the signal that ended it, 4 bytes
HEADER_SIZE = 8  # a request's first bytes: the length of what follows its descriptors


def key() -> str:
    """What must be equal for a server to run our command as we would: the
    interpreter, the library's place, the start-up environment. Raises nothing."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = "\n".join(f"{k}={os.environ.get(k, '')}" for k in _KEY_ENV)
    return f"{sys.executable}\n{sys.version}\n{here}\n{env}"


def address(key_: str) -> str:
    """The socket of the server for ``key_``. Raises nothing."""
    import zlib  # (a name, not a secret: the server compares the whole key)

    base = os.environ.get(DIR_ENV) or DEFAULT_DIR
    return os.path.join(base, f"cli-{zlib.crc32(key_.encode()):08x}.sock")


def encode_request(key_: str, argv: list[str]) -> bytes:
    """The request for ``argv`` (``sys.argv``; its descriptors go with it):
    the key, the umask, the arguments and the environment, NUL-separated
    (the key has none). Raises nothing."""
    umask = os.umask(0o022)
    os.umask(umask)
    fields = [key_.encode(), b"%d" % umask, b"%d" % len(argv)]
    fields += [os.fsencode(a) for a in argv]
    fields += [k + b"=" + v for k, v in os.environb.items()]
    return b"\0".join(fields)


def decode_request(data: bytes) -> tuple[str, int, list[str], dict[bytes, bytes]]:
    """(key, umask, argv, environment) of a request. Raises ValueError."""
    fields = data.split(b"\0")
    key_, umask, count = fields[0].decode(), int(fields[1]), int(fields[2])
    argv = [os.fsdecode(a) for a in fields[3 : 3 + count]]
    env = dict(item.partition(b"=")[::2] for item in fields[3 + count :] if item)
    return key_, umask, argv, env


def call(argv: list[str]) -> int | None:
    """Run ``argv`` in a warm server's child and return its exit code; None
    when the command is to run here (no server, or it refused). Raises
    nothing of its own: a KeyboardInterrupt before the child exists ends
    the request (the server then ends the child)."""
    if os.environ.get(ENV) == "0" or os.geteuid() != 0:
        return None
    code = _call(argv)
    if code is None and os.environ.get(ENV) == "require":
        sys.stderr.write(f"pylxcore: error: no command server served this command ({ENV}=require)\n")
        return 125
    return code


def _call(argv: list[str]) -> int | None:
    import socket

    key_ = key()
    path = address(key_)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        try:
            sock.connect(path)
        except OSError:
            start_server(path)
            return None
        try:
            return _request(sock, key_, [sys.argv[0], *argv], path)
        except (OSError, ValueError):
            return None  # (the server went away before the child existed: run it here)


def _request(sock: socket.socket, key_: str, argv: list[str], path: str) -> int | None:
    import socket

    fds = _std_fds() + [os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        data = encode_request(key_, argv)
        socket.send_fds(sock, [len(data).to_bytes(HEADER_SIZE, "little")], fds)
        sock.sendall(data)
    finally:
        for fd in fds:
            if fd > 2:
                os.close(fd)
    first = _recv_exact(sock, 1)
    if first == STALE:
        start_server(path)
        return None
    if first != CHILD:
        return None
    pid = int.from_bytes(_recv_exact(sock, 4), "little")
    _forward_signals(pid)
    try:
        kind = _recv_exact(sock, 1)
        value = int.from_bytes(_recv_exact(sock, 4), "little")
    except (OSError, ValueError) as err:
        # The command ran, or runs: running it here too would run it twice.
        sys.stderr.write(f"pylxcore: error: the command server went away while it ran the command: {err}\n")
        return 125
    if kind == KILLED:
        _die_of(value)
    return value


def _std_fds() -> list[int]:
    """Descriptors 0, 1 and 2, with /dev/null for any that is closed (a
    command started with ``<&-`` gets what a fresh interpreter would see). Raises OSError."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
    return fds


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``. Raises ValueError when it closed first, OSError."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("the command server closed the connection")
        data += chunk
    return data


def _forward_signals(pid: int) -> None:
    """From now on, the signals a terminal or a caller sends us go to the
    child that runs the command, as they would reach the command run here."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH,
                   signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)


def _die_of(signum: int) -> None:
    """End this process by ``signum``, as the child was: whoever waits for
    us sees the same status as for the command run here."""
    import signal

    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # (for a signal whose default is not to end)


def start_server(path: str) -> None:
    """Start a command server for ``path`` in the background (its own
    session, streams on /dev/null); it exits at once when another serves
    ``path`` already. Raises nothing: without a server, commands run here."""
    if os.environ.get(ENV) == "0":
        return
    argv = [sys.executable, "-m", "pylxcore.cli.warmserver", path]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)
    except OSError:
        pass


def stop_servers(base: str) -> list[int]:
    """Stop the command servers listening in the dir ``base`` (SIGTERM to
    the pid each wrote in its lock file, only while it holds that lock, so
    a reused pid is never signalled) and wait until they are gone; their pids.
    Commands they are running go on. Raises nothing."""
    import fcntl
    import time

    stopped = []
    try:
        names = [n for n in os.listdir(base) if n.endswith(".sock.lock")]
    except OSError:
        return []
    for name in names:
        try:
            fd = os.open(os.path.join(base, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            continue  # nobody holds it: no server
        except BlockingIOError:
            pass
        finally:
            try:
                pid = int(os.read(fd, 64).split()[0])
            except (OSError, ValueError, IndexError):
                pid = 0
            os.close(fd)
        if pid <= 0:
            continue
        try:
            os.kill(pid, 15)
        except OSError:
            continue
        stopped.append(pid)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
    return stopped
