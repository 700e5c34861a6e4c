"""The command server: a process with the library loaded that runs each
``pylxcore`` command line in a forked child (cli/warm.py says why, and how
a request travels).

``python -m pylxcore.cli.warmserver LOCK`` serves the requests written to
its FIFO ``LOCK``'s name + ``.PID.fifo`` (in a root-only dir). One server
per LOCK: it holds LOCK (flock) while it lives and writes its pid there, so
a second one exits at once. It stops taking requests once idle for ``IDLE``
seconds, when its lock file is gone or replaced, and when the library's
files changed since it loaded them (it answers that request STALE, and the
client starts a new server); it exits when its last command has ended.

For each request it checks the client (its uid, and that it lives in the
same namespaces: a child forked here sees this server's mounts, network
and pids, so a client elsewhere would get another machine's answer), takes
copies of the client's descriptors (pidfd_getfd), forks a child that takes
on those descriptors, the directory, umask, environment and arguments and
runs ``run_command``, tells the client the child's pid, and sends the
child's exit status when it ends. A client that dies ends its child
(SIGTERM), as the command would end with the process that ran it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import glob
import os
import selectors
import signal
import sys
import time

from pylxcore.cli.warm import CHILD, EXITED, KILLED, REFUSED, STALE, decode_request, exit_now, fifo_path, key

IDLE = 300.0  # seconds without a request before the server stops taking them
_CHECK_EVERY = 2.0  # seconds between looks at its lock file and the clock
_NAMESPACES = ("mnt", "net", "pid", "user", "uts", "ipc", "cgroup")
_SYS_PIDFD_GETFD = 438  # the same number on every architecture (new syscalls are numbered alike)
_MAX_REQUEST = 16 << 20  # bytes: arguments and environment
# What commands load lazily besides the library (each command imports its own
# modules on first use; the server wants them all before it forks).
_LAZY = ("argparse", "json", "logging", "tempfile", "shutil", "socket", "hashlib", "threading",
           "subprocess", "tarfile", "gzip", "lzma", "bz2", "random", "lxc")
_libc = ctypes.CDLL(None, use_errno=True)


def _pidfd_getfd(pidfd: int, fd: int) -> int:
    """A copy (close-on-exec) of descriptor ``fd`` of the process ``pidfd``
    refers to: the same open file. Raises OSError (the stdlib has no wrapper)."""
    new = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
    if new < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(new)


class _Job:
    """A command running in a child: the child, the client and the answer pipe."""

    def __init__(self, pid: int, pidfd: int, client_fd: int, reply: int) -> None:
        self.pid, self.pidfd, self.client_fd, self.reply = pid, pidfd, client_fd, reply


def _preload() -> None:
    """Import every module of the library and what its commands load lazily,
    so that a child imports nothing (a module that fails to import here
    fails in the child as it would in a fresh process)."""
    import importlib

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = list(_LAZY)
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d.isidentifier()]
        package = "pylxcore" + folder[len(top):].replace(os.sep, ".")
        names += [f"{package}.{f[:-3]}" for f in files if f.endswith(".py") and f != "__main__.py"]
    for name in names:
        try:
            importlib.import_module(name.removesuffix(".__init__"))
        except Exception:  # noqa: BLE001  (see the docstring)
            pass


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


def _read_all(fd: int) -> bytes:
    """The whole content of the memfd ``fd``. Raises OSError, ValueError."""
    size = os.fstat(fd).st_size
    if size > _MAX_REQUEST:
        raise ValueError("a request too large")
    data = b""
    while len(data) < size:
        chunk = os.pread(fd, size - len(data), len(data))
        if not chunk:
            break
        data += chunk
    return data


class Server:
    """One server's state. ``serve()`` runs it until it exits."""

    def __init__(self, lock: str) -> None:
        self.lock_path = lock
        self.key = key()
        self.jobs: dict[int, _Job] = {}  # by the child's pidfd
        self.clients: dict[int, _Job] = {}  # by the client's pidfd
        self.selector = selectors.DefaultSelector()
        self.namespaces = _namespaces("self")
        self.files: dict[str, int] = {}
        self.stale = False
        self.pending = b""  # a request line not read whole yet

    def listen(self) -> bool:
        """Take the lock and make the FIFO; False when another server holds the lock. Raises OSError."""
        base = os.path.dirname(self.lock_path)
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
        if not os.path.isdir(base) or os.path.islink(base) or info.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "not a dir of ours", base)
        os.chmod(base, 0o700)  # (whoever made it: what is written here runs as root)
        self.lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        for old in glob.glob(glob.escape(self.lock_path.removesuffix(".lock")) + ".*.fifo"):
            os.unlink(old)  # dead servers' (we hold the lock: they are gone)
        self.fifo_path = fifo_path(self.lock_path, os.getpid())
        os.mkfifo(self.fifo_path, 0o600)
        # Read and write: the FIFO never reads as ended when a client closes it.
        self.fifo = os.open(self.fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        os.ftruncate(self.lock, 0)
        os.write(self.lock, b"%d\n" % os.getpid())  # (clients find the FIFO by it; tests stop us by it)
        self.inode = os.fstat(self.lock).st_ino
        return True

    def serve(self) -> None:
        """Answer requests until idle, stale or replaced, then until the last command ends."""
        _preload()
        self.files = _loaded_files()
        gc.collect()
        gc.freeze()  # (the children's writes then leave these objects' pages shared)
        self.selector.register(self.fifo, selectors.EVENT_READ, "fifo")
        listening, last = True, time.monotonic()
        while listening or self.jobs:
            events = self.selector.select(timeout=_CHECK_EVERY)
            if listening and (self.stale or not self._still_ours()
                              or (not self.jobs and time.monotonic() - last > IDLE)):
                # No new client may reach us: finish the commands running. A
                # request written just before the unlink is still read below;
                # one written after our last read dies with us (its client
                # sees us gone and runs the command itself).
                os.unlink(self.fifo_path)
                listening = False
            for selkey, _ in events:
                kind = selkey.data
                if kind == "fifo":
                    last = time.monotonic()
                    self._read_requests()
                elif kind == "child":
                    self._reap(self.jobs.pop(selkey.fd))
                elif kind == "client":
                    self._client_gone(self.clients.pop(selkey.fd))
        self._refuse_waiting()

    def _still_ours(self) -> bool:
        """Whether our lock file is still the one we hold."""
        try:
            return os.stat(self.lock_path).st_ino == self.inode
        except OSError:
            return False

    def _lines(self) -> list[list[int]]:
        """The request lines waiting in the FIFO, each as its numbers."""
        while True:
            try:
                chunk = os.read(self.fifo, 65536)
            except BlockingIOError:
                chunk = b""
            if not chunk:
                break
            self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append([int(n) for n in line.split()])
            except ValueError:
                pass  # (nobody to answer: not a line a client writes)
        return out

    def _read_requests(self) -> None:
        """Serve the requests waiting in the FIFO."""
        for numbers in self._lines():
            try:
                self._start(numbers)
            except (OSError, ValueError):
                pass  # (a client gone, or a bad request: nothing to answer it on)

    def _refuse_waiting(self) -> None:
        """Answer the requests still in the FIFO as we exit: run it yourself."""
        for numbers in self._lines():
            try:
                client = os.pidfd_open(numbers[0])
                try:
                    reply = _pidfd_getfd(client, numbers[2])
                    os.write(reply, REFUSED)
                    os.close(reply)
                finally:
                    os.close(client)
            except (OSError, IndexError):
                pass

    def _start(self, numbers: list[int]) -> None:
        """Serve one request: ``client pid, memfd, answer pipe, cwd, stdin,
        stdout, stderr`` (the client's descriptor numbers). Raises OSError, ValueError."""
        if len(numbers) != 7:
            raise ValueError("a bad request line")
        client_pid, *fds = numbers
        client = os.pidfd_open(client_pid)
        taken: list[int] = []
        try:
            reply = _pidfd_getfd(client, fds[1])
            taken.append(reply)
            owner = os.stat(f"/proc/{client_pid}").st_uid
            if owner != os.geteuid() or _namespaces(client_pid) != self.namespaces:
                os.write(reply, REFUSED)
                return
            request = _pidfd_getfd(client, fds[0])
            taken.append(request)
            key_, umask, argv, env = decode_request(_read_all(request))
            if key_ != self.key or _changed(self.files):
                self.stale = True
                os.write(reply, STALE)
                return
            mine = [_pidfd_getfd(client, fd) for fd in (fds[2], fds[3], fds[4], fds[5])]
            taken += mine
            go_r, go_w = os.pipe()
            taken += [go_r, go_w]
            child = os.fork()
            if child == 0:
                others = [fd for fd in taken if fd not in mine and fd != go_r]
                self._child(go_r, others, mine, umask, argv, env)
            pidfd = os.pidfd_open(child)
            try:
                os.write(reply, CHILD + child.to_bytes(4, "little"))
            except OSError:
                os.close(pidfd)
                raise  # (the child reads the end of go_r: it runs nothing)
            os.write(go_w, b"g")
            taken.remove(reply)
            job = _Job(child, pidfd, client, reply)
            self.jobs[pidfd] = job
            self.clients[client] = job
            self.selector.register(pidfd, selectors.EVENT_READ, "child")
            self.selector.register(client, selectors.EVENT_READ, "client")
            client = -1
        finally:
            for fd in taken:
                os.close(fd)
            if client >= 0:
                os.close(client)

    def _child(self, go_r: int, others: list[int], fds: list[int], umask: int, argv: list[str],
               env: dict[bytes, bytes]) -> None:
        """In the forked child: wait for the go-ahead, become the client's
        command (``fds``: its directory, stdin, stdout, stderr), run it, exit."""
        code = 1
        try:
            for fd in others:  # (the go-ahead's write end among them: the server's death reads as b"")
                os.close(fd)
            self.selector.close()
            os.close(self.fifo)
            os.close(self.lock)
            for job in self.jobs.values():
                for fd in (job.pidfd, job.client_fd, job.reply):
                    os.close(fd)
            if os.read(go_r, 1) != b"g":
                os._exit(1)  # the server died before the client knew of us: run nothing
            os.close(go_r)
            for target, fd in enumerate(fds[1:]):
                os.dup2(fd, target)
            os.fchdir(fds[0])
            for fd in fds:
                os.close(fd)
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
        exit_now(code)

    def _reap(self, job: _Job) -> None:
        """The child of ``job`` ended: send its status, forget the job."""
        self.selector.unregister(job.pidfd)
        if self.clients.pop(job.client_fd, None) is not None:
            self.selector.unregister(job.client_fd)
        _, status = os.waitpid(job.pid, 0)
        if os.WIFSIGNALED(status):
            answer = KILLED + os.WTERMSIG(status).to_bytes(4, "little")
        else:
            answer = EXITED + os.waitstatus_to_exitcode(status).to_bytes(4, "little")
        try:
            os.write(job.reply, answer)
        except OSError:
            pass
        for fd in (job.pidfd, job.client_fd, job.reply):
            os.close(fd)

    def _client_gone(self, job: _Job) -> None:
        """The client of ``job`` died: the command ends with it (its child is
        reaped when its pidfd says so)."""
        self.selector.unregister(job.client_fd)
        try:
            os.kill(job.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _std_streams() -> None:
    """sys.stdin/stdout/stderr anew on descriptors 0–2, as an interpreter
    starting here would make them (line-buffered on a terminal)."""
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = open(0, encoding=encoding, errors=sys.stdin.errors, closefd=False)
    sys.stdout = open(1, "w", encoding=encoding, errors=errors, closefd=False)
    sys.stderr = open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False, buffering=1)


def main(argv: list[str]) -> int:
    """``python -m pylxcore.cli.warmserver LOCK``: serve until idle. 0 also
    when another server holds LOCK; 1 with the reason on stderr when it cannot serve."""
    if len(argv) != 1:
        print("usage: python -m pylxcore.cli.warmserver LOCK_PATH", file=sys.stderr)
        return 2
    server = Server(argv[0])
    try:
        if not server.listen():
            return 0
    except OSError as err:
        print(f"pylxcore command server: cannot serve {argv[0]}: {err}", file=sys.stderr)
        return 1
    os.chdir("/")
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
