"""The warm path of the ``pylxcore`` command: hand the command line to a
warm process that has the library loaded, instead of loading it again.

A fresh interpreter spends ~75 ms importing attrs, PyYAML, argparse, liblxc's
bindings and the library before a command does anything; the command itself
is often a few milliseconds (``ps``, a cached build) or ~30 ms (``run --rm``).
So ``pylxcore`` first asks the command server (cli/warmserver.py), a
process that imported all of that once, to fork a child that runs this very
command line: the same code (``pylxcore.__main__.run_command``), with this
process's standard streams, working directory, umask, environment and
arguments. This process waits and exits with the child's exit code (or dies
of its signal). Nothing runs in the server that would not run here.

When there is no server (the first command, or after it idled out), when
it runs other code than this process would (the library or the interpreter
changed), when it sees this process in other namespaces than its own, or
when ``PYLXCORE_WARM=0``: the command runs here, as it always did, and a
server is started in the background for the next one (``PYLXCORE_WARM=require``
makes these an error instead: for tests and for whoever wants to know).

How a request travels. This module is imported by every command, so it uses
only ``os``, ``sys``, ``select`` and ``zlib``: ``import socket`` alone costs
~11 ms (its enums), more than a cached build takes. So there is no socket:

1. The server (pid P) holds ``cli-KEY.lock`` (flock; it holds P) and reads
   the FIFO ``cli-KEY.P.fifo``, both in a dir of root's alone (0700).
2. We put the request (key, umask, argv, environment) in a memfd, make a
   pipe for the answers, open our directory, and write one line to the FIFO:
   our pid and the numbers of those descriptors and of our stdin, stdout
   and stderr. One short line is written whole (it is under PIPE_BUF).
3. The server takes copies of those descriptors out of our process
   (pidfd_getfd(2), which only root may do to a root process), checks our
   uid and namespaces, and answers on the pipe: the pid of the child that
   will run the command, or a refusal. The child waits for the server's
   go-ahead, given only once that answer is written: a server that dies in
   between leaves no child running a command we then run here too.
4. At the end the server writes the child's exit status on the pipe.

Ctrl-C (SIGINT) reaches us as a KeyboardInterrupt, which we pass on to the
child, and on a terminal so does SIGWINCH; a signal that ends us ends the
child too (the server watches us through a pidfd). We give up waiting for the first answer only when the
server P is dead (a pidfd says so): a dead server runs nothing.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (typing itself would cost every command ~3 ms)
if TYPE_CHECKING:
    from typing import NoReturn

ENV = "PYLXCORE_WARM"  # "0": never use or start a server; "require": fail rather than run here
DIR_ENV = "PYLXCORE_WARM_DIR"  # where the servers' files lie (tests give each their own)
DEFAULT_DIR = "/run/pylxcore/cli"
# Environment variables the interpreter reads at start-up (the streams'
# encoding, the module path): a server started under other values would not
# run the command as a fresh interpreter here would, so they are part of its key.
_KEY_ENV = ("PYTHONPATH", "PYTHONIOENCODING", "PYTHONUTF8", "LC_ALL", "LC_CTYPE", "LANG")

# The server's first answer: the pid of the child that runs the command, or a refusal.
CHILD = b"P"  # + the child's pid as 4 bytes
STALE = b"S"  # it runs other code: run the command here
REFUSED = b"R"  # another uid or other namespaces: run it here
# Its last answer: the child's exit status.
EXITED = b"X"  # + the exit code as 4 bytes
KILLED = b"K"  # + the number of the signal that ended it, 4 bytes


def exit_now(code: int) -> NoReturn:
    """End this process with ``code`` once its standard streams are flushed,
    without the interpreter's teardown: for a process whose work is done and
    that holds nothing else to clean up (a served client, a server's child).
    A stream that is closed, or whose reader has gone, has nothing more to say."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def key() -> str:
    """What must be equal for a server to run our command as we would: the
    interpreter, the library's place, the start-up environment. Raises nothing."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = "\n".join(f"{k}={os.environ.get(k, '')}" for k in _KEY_ENV)
    return f"{sys.executable}\n{sys.version}\n{here}\n{env}"


def lock_path(key_: str) -> str:
    """The lock file of the server for ``key_`` (it holds the server's pid). Raises nothing."""
    import zlib  # (a name, not a secret: the server compares the whole key)

    base = os.environ.get(DIR_ENV) or DEFAULT_DIR
    return os.path.join(base, f"cli-{zlib.crc32(key_.encode()):08x}.lock")


def fifo_path(lock: str, pid: int) -> str:
    """The request FIFO of server ``pid`` whose lock file is ``lock``. Raises nothing."""
    return f"{lock.removesuffix('.lock')}.{pid}.fifo"


def encode_request(key_: str, argv: list[str]) -> bytes:
    """The request for ``argv`` (``sys.argv``): the key, the umask, the
    arguments and the environment, NUL-separated (the key has none). Raises nothing."""
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
    nothing of its own."""
    if os.environ.get(ENV) == "0" or os.geteuid() != 0:
        return None
    code = _call(argv)
    if code is None and os.environ.get(ENV) == "require":
        sys.stderr.write(f"pylxcore: error: no command server served this command ({ENV}=require)\n")
        return 125
    return code


def _call(argv: list[str]) -> int | None:
    key_ = key()
    lock = lock_path(key_)
    try:
        with open(lock, "rb") as fh:
            server = int(fh.read(32).split()[0])
        server_fd = os.pidfd_open(server)
    except (OSError, ValueError, IndexError):
        start_server(lock)
        return None
    opened: list[int] = [server_fd]
    try:
        try:
            fifo = os.open(fifo_path(lock, server), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # (no such FIFO, or nobody reads it: that server is gone)
            start_server(lock)
            return None
        opened.append(fifo)
        reply, reply_w = os.pipe()
        opened += [reply, reply_w]
        request = os.memfd_create("pylxcore-request", os.MFD_CLOEXEC)
        opened.append(request)
        data = memoryview(encode_request(key_, [sys.argv[0], *argv]))
        while data:
            data = data[os.write(request, data) :]
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(cwd)
        std = []
        for fd in (0, 1, 2):  # (a closed one: /dev/null, as a fresh interpreter would have)
            try:
                os.fstat(fd)
            except OSError:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                opened.append(fd)
            std.append(fd)
        line = b" ".join(b"%d" % n for n in (os.getpid(), request, reply_w, cwd, *std)) + b"\n"
        try:
            os.write(fifo, line)
        except OSError:  # (a full FIFO, or its reader gone: it has not got our request)
            return None
        answer = _first_answer(reply, server_fd)
        opened.remove(reply)  # (_finish closes it)
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)
    return _finish(reply, answer, lock)


def _first_answer(reply: int, server_fd: int) -> bytes:
    """The server's first answer on ``reply``; b"" when the server died
    without one (then it runs nothing of ours). Raises OSError."""
    import select

    poll = select.poll()
    poll.register(reply, select.POLLIN)
    poll.register(server_fd, select.POLLIN)
    data = b""
    while True:
        events = dict(poll.poll())
        if reply in events:
            chunk = os.read(reply, 5 - len(data))
            data += chunk
            if not chunk or data[:1] != CHILD or len(data) == 5:
                return data
        elif server_fd in events:
            poll.unregister(server_fd)  # dead: what it wrote is in the pipe, else nothing comes
            try:
                os.set_blocking(reply, False)
                return data + os.read(reply, 5 - len(data))
            except BlockingIOError:
                return data


def _finish(reply: int, answer: bytes, lock: str) -> int | None:
    """Wait for the child of ``answer`` to end; its exit code (None: run here). Raises nothing."""
    try:
        if answer[:1] != CHILD or len(answer) != 5:
            if answer[:1] == STALE:
                start_server(lock)
            return None
        child = int.from_bytes(answer[1:], "little")
        if os.isatty(0):
            _follow_window_size(child)
        os.set_blocking(reply, True)
        data = b""
        while len(data) < 5:
            try:
                chunk = os.read(reply, 5 - len(data))
            except KeyboardInterrupt:  # Ctrl-C: the command's to handle, as it would be here
                try:
                    os.kill(child, 2)
                except OSError:
                    pass
                continue
            except OSError:
                chunk = b""
            if not chunk:
                # The command ran, or runs: running it here too would run it twice.
                sys.stderr.write("pylxcore: error: the command server went away while it ran the command\n")
                return 125
            data += chunk
    finally:
        os.close(reply)
    value = int.from_bytes(data[1:], "little")
    if data[:1] == KILLED:
        _die_of(value)
    return value


def _follow_window_size(child: int) -> None:
    """On a terminal, pass SIGWINCH on to ``child``: a window that changes size
    reaches the command (only a terminal pays for the signal module)."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    signal.signal(signal.SIGWINCH, forward)


def _die_of(signum: int) -> None:
    """End this process by ``signum``, as the child was: whoever waits for
    us sees the same status as for the command run here."""
    import signal

    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # (for a signal whose default is not to end)


def start_server(lock: str) -> None:
    """Start a command server for ``lock`` in the background (its own
    session, streams on /dev/null); it exits at once when another holds
    ``lock`` already. Raises nothing: without a server, commands run here."""
    if os.environ.get(ENV) == "0":
        return
    argv = [sys.executable, "-m", "pylxcore.cli.warmserver", lock]
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
        names = [n for n in os.listdir(base) if n.endswith(".lock")]
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
