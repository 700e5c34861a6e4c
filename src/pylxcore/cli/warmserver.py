"""The command server: a process with the library loaded that runs each
``pylxcore`` command line in a forked child (see cli/warm.py for why and
for the client's side).

``python -m pylxcore.cli.warmserver PATH`` listens on the unix socket PATH
(in a root-only dir). One server per PATH: it holds ``PATH.lock`` (flock)
while it lives, so a second one exits at once, and a socket file left by a
killed server is replaced. It exits once idle for ``IDLE`` seconds, when
its socket file is gone or replaced, and when the library's files changed
since it loaded them (it answers that request STALE first, and the client
starts a new server).

For each request it checks the client (its uid, and that it lives in the
same namespaces: a child forked here sees this server's mounts, network
and pids, so a client elsewhere would get another machine's answer), forks
a child that takes on the client's descriptors, directory, umask,
environment and arguments and runs ``run_command``, tells the client the
child's pid (to which the client forwards its signals), and sends the
child's exit status when it ends. A client that goes away ends its child,
as the command would end with the process that ran it.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import selectors
import signal
import socket
import sys
import time

from pylxcore.cli.warm import CHILD, EXITED, HEADER_SIZE, KILLED, REFUSED, STALE, decode_request, key
from pylxcore.supervisor.protocol import peer_credentials

IDLE = 300.0  # seconds without a request before the server exits
_CHECK_EVERY = 2.0  # seconds between looks at its socket file and the clock
_NAMESPACES = ("mnt", "net", "pid", "user", "uts", "ipc", "cgroup")
# What every command may need, loaded once here (each command imports its own
# modules lazily; the server wants them all before it forks).
_PRELOAD = (
    "pylxcore.cli.dispatch", "pylxcore.cli.parser", "pylxcore.cli.output", "pylxcore.cli.containers",
    "pylxcore.cli.run", "pylxcore.cli.attach", "pylxcore.cli.images", "pylxcore.cli.completion",
    "pylxcore.engine", "pylxcore.images", "pylxcore.runtime.containers", "pylxcore.runtime.container",
    "pylxcore.build.builder", "pylxcore.build.recorder", "pylxcore.spec.yaml", "pylxcore.transfer",
    "lxc", "logging", "json",
)


class _Job:
    """A command running in a child: its pid, pidfd and client connection."""

    def __init__(self, pid: int, pidfd: int, conn: socket.socket) -> None:
        self.pid, self.pidfd, self.conn = pid, pidfd, conn


def _namespaces(pid: int | str) -> tuple[int, ...]:
    """The inode numbers of ``pid``'s namespaces. Raises OSError."""
    return tuple(os.stat(f"/proc/{pid}/ns/{ns}").st_ino for ns in _NAMESPACES)


def _loaded_files() -> dict[str, int]:
    """The library's loaded source files and their mtimes (ns)."""
    files = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "lxc" or name.startswith(("pylxcore", "lxc.", "attr", "yaml"))):
            try:
                files[path] = os.stat(path).st_mtime_ns
            except OSError:
                files[path] = -1
    return files


def _changed(files: dict[str, int]) -> bool:
    """Whether any of ``files`` changed since it was loaded."""
    for path, mtime in files.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return True
        except OSError:
            return True
    return False


class Server:
    """One server's state. ``serve()`` runs it until it exits."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.key = key()
        self.jobs: dict[int, _Job] = {}  # by pidfd
        self.clients: dict[int, _Job] = {}  # by the client's socket fd
        self.selector = selectors.DefaultSelector()
        self.namespaces = _namespaces("self")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.files: dict[str, int] = {}
        self.stale = False

    def listen(self) -> bool:
        """Take the lock and the socket; False when another server has them. Raises OSError."""
        base = os.path.dirname(self.path)
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
        if not os.path.isdir(base) or os.path.islink(base) or info.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "not a dir of ours", base)
        os.chmod(base, 0o700)  # (whoever made it: this socket runs commands as root)
        self.lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.lock, 0)
        os.write(self.lock, b"%d\n" % os.getpid())  # (who to stop: tests end what they started, by pid)
        try:
            os.unlink(self.path)  # a killed server's: we hold the lock, so nobody listens on it
        except FileNotFoundError:
            pass
        old = os.umask(0o077)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.inode = os.stat(self.path).st_ino
        return True

    def serve(self) -> None:
        """Answer requests until idle, stale, or until our socket is gone."""
        for name in _PRELOAD:
            __import__(name)
        self.files = _loaded_files()
        gc.collect()
        gc.freeze()  # (the children's writes then leave these objects' pages shared)
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        listening, last = True, time.monotonic()
        while listening or self.jobs:
            events = self.selector.select(timeout=_CHECK_EVERY)
            if listening and (self.stale or not self._still_ours()
                              or (not self.jobs and time.monotonic() - last > IDLE)):
                # Nobody new may reach us or should: finish the commands running.
                if self._still_ours():
                    os.unlink(self.path)
                self.selector.unregister(self.listener)
                self.listener.close()
                listening = False
            for selkey, _ in events:
                kind = selkey.data
                if kind == "listener" and listening:
                    last = time.monotonic()
                    self._accept()
                elif kind == "pidfd":
                    self._reap(self.jobs.pop(selkey.fd))
                elif kind == "client":
                    self._client_gone(self.clients[selkey.fd])

    def _still_ours(self) -> bool:
        """Whether our socket file is still the one we bound (a removed or
        replaced one means that nobody new can reach us: exit). Ours is
        removed as we stop listening: we hold the lock, so it is ours."""
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            self._start(conn)
        except (OSError, ValueError):
            conn.close()

    def _start(self, conn: socket.socket) -> None:
        """Read one request on ``conn`` and fork its child (or refuse). Raises OSError, ValueError."""
        conn.settimeout(5)
        pid, uid, _ = peer_credentials(conn)
        header, fds, _, _ = socket.recv_fds(conn, HEADER_SIZE, 4)
        try:
            if len(header) != HEADER_SIZE or len(fds) != 4:
                raise ValueError("a bad request")
            size = int.from_bytes(header, "little")
            data = b""
            while len(data) < size:
                chunk = conn.recv(min(size - len(data), 1 << 20))
                if not chunk:
                    raise ValueError("a short request")
                data += chunk
            key_, umask, argv, env = decode_request(data)
            if uid != os.geteuid() or _namespaces(pid) != self.namespaces:
                conn.sendall(REFUSED)
                raise ValueError("another uid or other namespaces")
            if key_ != self.key or _changed(self.files):
                self.stale = True
                conn.sendall(STALE)
                raise ValueError("stale")
            child = os.fork()
            if child == 0:
                self._child(fds, umask, argv, env)
            pidfd = os.pidfd_open(child)
        finally:
            for fd in fds:
                os.close(fd)
        conn.settimeout(None)
        job = _Job(child, pidfd, conn)
        self.jobs[pidfd] = job
        self.clients[conn.fileno()] = job
        self.selector.register(pidfd, selectors.EVENT_READ, "pidfd")
        self.selector.register(conn, selectors.EVENT_READ, "client")
        conn.sendall(CHILD + child.to_bytes(4, "little"))

    def _child(self, fds: list[int], umask: int, argv: list[str], env: dict[bytes, bytes]) -> None:
        """In the forked child: become the client's command, run it, exit with its code."""
        code = 1
        try:
            self.selector.close()
            self.listener.close()
            os.close(self.lock)
            for job in self.jobs.values():
                os.close(job.pidfd)
                job.conn.close()
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            os.fchdir(fds[3])
            os.umask(umask)
            os.environb.clear()
            os.environb.update(env)
            sys.argv = argv
            _std_streams()
            from pylxcore.__main__ import run_command

            code = run_command(argv[1:])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001  (as an interpreter would: the traceback, then 1)
            import traceback

            traceback.print_exc()
        try:
            sys.stdout.flush()
        except OSError:
            pass
        try:
            sys.stderr.flush()
        except OSError:
            pass
        os._exit(code)

    def _reap(self, job: _Job) -> None:
        """The child of ``job`` ended: send its status, close the request."""
        self.selector.unregister(job.pidfd)
        self.selector.unregister(job.conn)
        del self.clients[job.conn.fileno()]
        _, status = os.waitpid(job.pid, 0)
        os.close(job.pidfd)
        if os.WIFSIGNALED(status):
            answer = KILLED + os.WTERMSIG(status).to_bytes(4, "little")
        else:
            answer = EXITED + os.waitstatus_to_exitcode(status).to_bytes(4, "little")
        try:
            job.conn.sendall(answer)
        except OSError:
            pass
        job.conn.close()

    def _client_gone(self, job: _Job) -> None:
        """The client of ``job`` closed (it sends nothing after its request):
        the command ends with it. Its child is reaped when its pidfd says so."""
        self.selector.unregister(job.conn)
        del self.clients[job.conn.fileno()]
        try:
            os.kill(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _std_streams() -> None:
    """sys.stdin/stdout/stderr anew on descriptors 0–2, as an interpreter
    starting here would make them (line-buffered on a terminal)."""
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = open(0, encoding=encoding, errors=sys.stdin.errors, closefd=False)
    sys.stdout = open(1, "w", encoding=encoding, errors=errors, closefd=False)
    sys.stderr = open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False,
                      buffering=1)


def main(argv: list[str]) -> int:
    """``python -m pylxcore.cli.warmserver PATH``: serve PATH until idle. 0
    also when another server has it; 1 with the reason on stderr when it cannot listen."""
    if len(argv) != 1:
        print("usage: python -m pylxcore.cli.warmserver SOCKET_PATH", file=sys.stderr)
        return 2
    server = Server(argv[0])
    try:
        if not server.listen():
            return 0
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            return 0
        print(f"pylxcore command server: cannot listen on {argv[0]}: {err}", file=sys.stderr)
        return 1
    os.chdir("/")
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
