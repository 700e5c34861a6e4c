"""The container supervisor: one small process per running container.

It outlives the Python process that started the container (like Docker's
containerd-shim or podman's conmon): it runs ``lxc-execute``, writes the
container's stdout and stderr apart with timestamps into its log, and records
the exit code and whether the kernel OOM-killed it. Then it exits.

It imports only small, built-in modules (no json, subprocess, selectors,
signal or typing: those pull in re, enum and friends, which cost tens of
milliseconds per container start) and is started as ``python -I -S`` on its
compiled bytecode. Run as ``python -I -S _shim.py CONTAINER_DIR``; it reads
``CONTAINER_DIR/run.spec``: NUL-separated fields ``auto_remove`` ("0"/"1"),
the OOM counter file to watch (or ""), the log's size cap in bytes (-1: none)
and its number of files, the number N of environment entries that follow
(``KEY=VALUE``: lxc-execute's whole environment, see lxcconfig.split_env),
then the lxc-execute command line.

When liblxc cannot start the container (lxc-execute fails before the main
process exists), the supervisor answers START_FAILED and liblxc's ERROR lines
instead of "ok", and leaves the container as it was: see ``_start_failure``.

Log format: records of ``struct "<dBI"`` (unix time, stream 1=stdout
2=stderr, length) followed by that many bytes. One ``write`` per record on an
O_APPEND file, so a reader sees whole records or a short tail it retries.
The log rotates like Docker's json-file driver: past its size cap, ``log``
becomes ``log.1`` (``log.1`` becomes ``log.2``, …; the oldest beyond the
number of files goes) and a fresh ``log`` starts. Only renames: a reader that
holds a file open reads it to its end undisturbed, and a record never spans
two files.
"""

from __future__ import annotations

import _signal as signal
import os
import select
import struct
import sys
import time

TYPE_CHECKING = False  # (typing itself would cost this process milliseconds)
if TYPE_CHECKING:
    from typing import NoReturn

RECORD = struct.Struct("<dBI")
STDOUT, STDERR = 1, 2


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has ended; only its parent has not reaped it yet
    return int(fields[19])


def _json(value: object) -> str:
    """JSON of the flat values a state holds (str, int, float, bool, None)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return f'"{value}"'
    raise ValueError(f"cannot encode {value!r}")


def write_json_atomic(path: str, obj: dict[str, object], *, durable: bool = True) -> None:
    """Replace ``path`` with ``obj`` as JSON, atomically (temp + rename); with
    ``durable``, also on disk before the rename (fsync)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    text = "{" + ", ".join(f'"{k}": {_json(v)}' for k, v in obj.items()) + "}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class _Log:
    """The container's log, written so that a full disk costs output, never the
    supervisor: a crashed supervisor would lose the exit code (and the pipes'
    reader). Some space is held back in a ``reserve`` file from the start and
    given up on the first ENOSPC, so the last lines and state.json still fit.

    It rotates past ``max_size`` bytes (-1: never), keeping ``max_files``
    files (see the module docstring). Mode 0600: the output of a container is
    as private as its env."""

    RESERVE = 256 * 1024

    def __init__(self, ctrdir: str, max_size: int = -1, max_files: int = 1) -> None:
        self.path = os.path.join(ctrdir, "log")
        self.max_size = max_size
        self.max_files = max_files
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(self.fd, 0o600)  # a log from before 0600 was the rule
        self.size = os.fstat(self.fd).st_size
        self.reserve = os.path.join(ctrdir, "reserve")
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.RESERVE)
            finally:
                os.close(fd)
        except OSError:
            pass  # no room even for that: we do without

    def release(self) -> bool:
        """Give the reserved space back to the filesystem; False if already done."""
        try:
            os.unlink(self.reserve)
        except FileNotFoundError:
            return False
        return True

    def rotate(self) -> None:
        """``log`` -> ``log.1`` -> ``log.2`` …, the oldest beyond ``max_files``
        replaced, then a fresh ``log``. Under an exclusive flock on the
        container's dir, which readers take shared to look at the names (see
        containers._LogCursor); never waiting for it: while a reader holds it,
        the rotation waits for the next record. The fresh file is made first:
        when not even that fits, the log grows past its cap rather than lose output."""
        import fcntl  # noqa: PLC0415  (small, and only needed here)

        try:
            lock = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        fd = -1
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fresh = self.path + ".new"
            fd = os.open(fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            for i in range(self.max_files - 1, 0, -1):
                try:
                    os.rename(f"{self.path}.{i - 1}" if i > 1 else self.path, f"{self.path}.{i}")
                except FileNotFoundError:
                    pass  # not there yet
            os.rename(fresh, self.path)  # with max_files == 1, this replaces the full one
        except OSError:  # locked by a reader, or no room for a file
            if fd >= 0:
                os.close(fd)
            return
        finally:
            os.close(lock)  # (which unlocks)
        os.close(self.fd)
        self.fd, self.size = fd, 0

    def write(self, stream: int, data: bytes) -> None:
        record = RECORD.pack(time.time(), stream, len(data)) + data
        # Before the write: a record goes whole into one file, and a file
        # passes its cap only when one record alone is bigger.
        if self.max_size > 0 and self.size and self.size + len(record) > self.max_size:
            self.rotate()
        for _ in range(2):
            try:
                if os.write(self.fd, record) == len(record):
                    self.size += len(record)
                    return
            except OSError:
                pass
            # A short or failed write: drop the partial record (readers would
            # stop at it for good), free the reserve and try once more.
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            if not self.release():
                return

    def close(self) -> None:
        os.close(self.fd)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(x) for x in fh.read().split()]
        except OSError:
            continue
    return out


def _nspid(pid: int) -> int | None:
    """The pid of ``pid`` inside its own (innermost) pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def find_pids(lxc_pid: int) -> tuple[int | None, int | None, bool]:
    """(init, main, main_gone) on the host for the container run by ``lxc-execute``
    process ``lxc_pid``. liblxc's init is pid 1 of the container and starts the
    command as pid 2: an orphan reparented to init is never pid 2, so this tells
    the main process apart even after it has gone."""
    for child in _children(lxc_pid):
        if _nspid(child) != 1:
            continue
        kids = _children(child)
        main = next((k for k in kids if _nspid(k) == 2), None)
        return child, main, main is None and bool(kids)
    return None, None, False


def _end_container(init_fd: int | None) -> None:
    """SIGTERM to liblxc's init: it sends SIGTERM to every process left in the
    container, SIGKILL a second later, then exits with the main process's code.
    By pidfd: init may have exited and its pid been reused meanwhile."""
    if init_fd is None:
        return
    try:
        signal.pidfd_send_signal(init_fd, signal.SIGTERM)
    except ProcessLookupError:
        pass


class _Process:
    """A program (lxc-execute; the supervisor itself for containers.py), started
    with posix_spawn: subprocess costs ~10 ms to import."""

    def __init__(
        self, argv: list[str], stdin: int, stdout: int, stderr: int, env: dict[str, str] | None = None
    ) -> None:
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        environ = os.environ if env is None else env
        self.pid = os.posix_spawn(argv[0], argv, environ, file_actions=actions, setsid=False)
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self) -> int:
        if self.code is None:
            _, status = os.waitpid(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
        return self.code


class _OomWatch:
    """Counts OOM kills in the container's memory cgroup while it lives.

    cgroup v1: an eventfd registered on memory.oom_control fires at every OOM
    (and when the cgroup goes away); v2: memory.events raises POLLPRI on every
    change. Either way the counter is read while the cgroup still exists:
    liblxc removes it the moment the container ends, so reading it at the end
    (or from a stop hook, which costs two shells on every stop) is too late
    or too slow."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.killed = False
        # An OOM event arrives as the OOM starts; the kill is counted a moment
        # later. Until then the supervisor polls the counter every few ms.
        self.pending = False
        self.fd: int | None = None
        self._file: int | None = None
        if not path:
            return
        try:
            self._file = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if path.endswith("memory.oom_control"):
                self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                control = os.path.join(os.path.dirname(path), "cgroup.event_control")
                cfd = os.open(control, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(cfd, f"{self.fd} {self._file}".encode())
                finally:
                    os.close(cfd)
            else:
                self.fd = self._file
        except OSError:
            self.close()
            return
        self.check()  # an OOM before we started watching

    @property
    def events(self) -> int:
        return select.POLLIN if self.fd != self._file else select.POLLPRI

    def check(self, event: bool = False) -> bool:
        """Read the counter (after an ``event`` on our fd, consume it first);
        False once the cgroup is gone: stop watching. The cgroup's removal also
        fires the eventfd, so only an event while it exists means an OOM."""
        if event and self.fd is not None and self.fd != self._file:
            try:
                os.eventfd_read(self.fd)
            except OSError:
                pass
        try:
            data = os.pread(self._file, 4096, 0) if self._file is not None else b""
        except OSError:
            return False
        if not data:
            return False
        if event:
            self.pending = True
        for line in data.split(b"\n"):
            words = line.split()
            if len(words) == 2 and words[0] == b"oom_kill" and int(words[1]) > 0:
                self.killed = True
        if self.killed:
            self.pending = False
        return True

    def close(self) -> None:
        for fd in {self.fd, self._file}:
            if fd is not None:
                os.close(fd)
        self.fd = self._file = None


USERNS_ROOTFS = "/run/pylxcore/rootfs"
_CLONE_NEWNS = 0x00020000


def userns_rootfs(ctrdir: str) -> None:
    """Mount a user-namespaced container's root at USERNS_ROOTFS, in a mount
    namespace of this process's own (lxc-execute inherits it): each image
    layer idmapped to the container's ids, the overlay over them with the
    container's writable layer on top. See pylxcore.runtime.userns. Raises OSError."""
    import ctypes  # noqa: PLC0415  (only user-namespaced containers need it)

    with open(os.path.join(ctrdir, "userns.spec")) as fh:
        lines = fh.read().splitlines()
    ustart, ucount, gstart, gcount = (int(x) for x in lines[0].split())
    lowers = [line[len("lower ") :] for line in lines[1:] if line.startswith("lower ")]
    keep = [line[len("keep ") :] for line in lines[1:] if line.startswith("keep ")]
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> int:
        if result < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return result

    clone_newuser = 0x10000000
    ms_rec, ms_private = 0x4000, 1 << 18
    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, ms_rec | ms_private, None), "mount --make-rprivate /")

    # A user namespace with the container's map: what the idmapped mounts use.
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(hold_w)
        code = 0 if libc.unshare(clone_newuser) == 0 else 1
        os.write(ready_w, b"x")
        os.read(hold_r, 1)  # until the parent has opened our namespace
        os._exit(code)
    os.close(ready_w)
    os.close(hold_r)
    userns = -1
    try:
        os.read(ready_r, 1)
        with open(f"/proc/{child}/uid_map", "w") as fh:
            fh.write(f"0 {ustart} {ucount}")
        with open(f"/proc/{child}/gid_map", "w") as fh:
            fh.write(f"0 {gstart} {gcount}")
        userns = os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.close(ready_r)
        os.waitpid(child, 0)

    class MountAttr(ctypes.Structure):
        _fields_ = [  # noqa: RUF012  (ctypes' own convention)
            ("attr_set", ctypes.c_uint64),
            ("attr_clr", ctypes.c_uint64),
            ("propagation", ctypes.c_uint64),
            ("userns_fd", ctypes.c_uint64),
        ]

    sys_open_tree, sys_move_mount, sys_mount_setattr = 428, 429, 442  # the same on x86_64 and arm64
    open_tree_clone, at_empty_path, move_mount_f_empty_path = 1, 0x1000, 0x4
    mount_attr_idmap = 0x100000
    attr = MountAttr(mount_attr_idmap, 0, 0, userns)
    try:
        for i, lower in enumerate(lowers):
            fd = check(
                libc.syscall(sys_open_tree, -100, lower.encode(), open_tree_clone | os.O_CLOEXEC), "open_tree"
            )
            try:
                size = ctypes.sizeof(attr)
                check(
                    libc.syscall(sys_mount_setattr, fd, b"", at_empty_path, ctypes.byref(attr), size),
                    "mount_setattr(MOUNT_ATTR_IDMAP)",
                )
                target = os.path.join(ctrdir, "lower", str(i))
                check(
                    libc.syscall(sys_move_mount, fd, b"", -100, target.encode(), move_mount_f_empty_path),
                    "move_mount",
                )
            finally:
                os.close(fd)
    finally:
        os.close(userns)
    # Relative paths (from the container's dir) keep the options short: the
    # whole option string must fit in one page.
    lowerdir = ":".join(f"lower/{i}" for i in range(len(lowers)))
    options = f"lowerdir={lowerdir},upperdir=upper,workdir=work"
    # The container's root must reach its rootfs through dirs it may enter,
    # and a store root may well lie under a 0700 dir: so the overlay goes on a
    # tmpfs of this namespace's own at USERNS_ROOTFS's parent, which the host
    # only ever sees as an empty dir.
    parent = os.path.dirname(USERNS_ROOTFS)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    check(libc.mount(b"tmpfs", parent.encode(), b"tmpfs", 0, b"mode=0755,size=64k"), "mount tmpfs")
    os.mkdir(USERNS_ROOTFS, 0o755)
    cwd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    os.chdir(ctrdir)
    try:
        options_b = options.encode()
        check(libc.mount(b"overlay", USERNS_ROOTFS.encode(), b"overlay", 0, options_b), "mount overlay")
    finally:
        os.fchdir(cwd)
        os.close(cwd)
    # liblxc wants the container's root to be able to enter the lxcpath (the
    # store's containers/). When a dir on the way is closed to others (the
    # store's own dirs are root's alone, 0700; a 0700 home, pytest's tmp),
    # rebuild it in this mount namespace: a tmpfs over the closed dir, and in
    # it, at their own paths, this container's dir (not the real containers/,
    # which stays closed: its stand-in on the tmpfs is open) and whatever else
    # liblxc reads from under it (the seccomp profile, the sources of bind
    # mounts). The host's dirs keep their modes.
    lxcpath = os.path.dirname(os.path.abspath(ctrdir))
    parts = lxcpath.strip("/").split("/")
    ancestors = ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    closed = next((p for p in ancestors if not os.stat(p).st_mode & 0o001), None)
    if closed is None:
        return
    clones: list[tuple[str, bool, int]] = []
    try:
        for path in [os.path.abspath(ctrdir), *keep]:
            if path == closed or path.startswith(closed + "/"):
                flags = open_tree_clone | 0x8000 | os.O_CLOEXEC  # AT_RECURSIVE
                fd = check(libc.syscall(sys_open_tree, -100, path.encode(), flags), f"open_tree {path}")
                clones.append((path, os.path.isdir(path), fd))
        check(libc.mount(b"tmpfs", closed.encode(), b"tmpfs", 0, b"mode=0755,size=64k"), "mount tmpfs")
        for path, is_dir, fd in clones:
            if is_dir:
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            where = path.encode()
            check(libc.syscall(sys_move_mount, fd, b"", -100, where, move_mount_f_empty_path), "move_mount")
    finally:
        for _, _, fd in clones:
            os.close(fd)


def _leave_mount_namespace(host_ns: int) -> None:
    """setns(2) back into the mount namespace ``host_ns`` (and close it)."""
    import ctypes  # noqa: PLC0415

    try:
        if ctypes.CDLL(None, use_errno=True).setns(host_ns, _CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNS)")
    finally:
        os.close(host_ns)


# The ready pipe's answer, then liblxc's ERROR lines, when liblxc could not start the container.
START_FAILED = "start failed"
# What lxc-execute logs (in lxc.log, at ERROR level) when liblxc's start() failed.
_LXC_START_FAILED = "Failed run an application inside container"


def _lxc_errors(lxc_log: str) -> list[str]:
    """liblxc's ERROR lines in ``lxc_log``, in order (the cause first)."""
    try:
        with open(lxc_log, errors="replace") as fh:
            return [ln.strip() for ln in fh if " ERROR " in ln]
    except OSError:
        return []


def _died_in_setup(pid: int, program: str) -> bool:
    """Whether the container's first process ``pid`` has died while liblxc set
    it up: a zombie still named after lxc-execute never exec'd the container's
    init, so no command of the container ever ran."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    name = os.path.basename(program).encode()[:15]  # the kernel keeps 15 bytes of a name
    return data[data.rfind(b")") + 2 :][:1] == b"Z" and data.startswith(b"%d (%s)" % (pid, name))


def _start_failure(proc: _Process, lxc_log: str, died: bool) -> str | None:
    """liblxc's reason when it could not start the container, else None.

    Asked when lxc-execute has ended (or the container's first process died)
    before the main process was ever seen. A main process that exits at once
    can look the same from here, so the sign is liblxc's own: lxc-execute logs
    _LXC_START_FAILED at ERROR level when, and only when, liblxc's start()
    failed; the exit status of a main process that ran, whatever it is, never
    fails start(). (lxc.log lies in the container's dir on the host, out of
    the container's reach.) A first process that ``died`` in setup is a
    failure too, though liblxc may then wait on it forever (seen with memory
    limits of some kB): it gets a moment to report, then SIGKILL."""
    if died:
        end = time.monotonic() + 2
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    elif proc.code is None or proc.code == 0:
        return None  # still running (no main process after 30 s), or a main process that exited 0
    lines = _lxc_errors(lxc_log)
    if not died and not any(_LXC_START_FAILED in line for line in lines):
        return None
    return "\n".join(lines) or "the container's first process died while liblxc set it up (no error logged)"


def supervise(
    ctrdir: str,
    auto_remove: bool,
    oom_path: str,
    argv: list[str],
    ready_fd: int,
    log_max_size: int = -1,
    log_max_files: int = 1,
    env: dict[str, str] | None = None,
) -> int:
    state_path = os.path.join(ctrdir, "state.json")
    lxc_log = os.path.join(ctrdir, "lxc.log")
    # Emptied of the last run's lines, and 0600 like the log: liblxc appends
    # to it, and would create it 0640.
    fd = os.open(lxc_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    log = _Log(ctrdir, log_max_size, log_max_files)
    host_mnt_ns = None
    if os.path.exists(os.path.join(ctrdir, "userns.spec")):
        # Keep a way back to the host's mount namespace: nothing may touch the
        # container's dir while the idmapped image layers are mounted in it.
        host_mnt_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            userns_rootfs(ctrdir)
        except OSError as err:
            _leave_mount_namespace(host_mnt_ns)
            msg = f"error: cannot mount the container's root for its user namespace: {err}"
            os.write(ready_fd, msg.encode())
            return 1
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        proc = _Process(argv, devnull, out_w, err_w, env)
    except OSError as err:
        os.write(ready_fd, f"error: cannot run {argv[0]}: {err}".encode())
        return 1
    os.close(out_w)
    os.close(err_w)
    os.close(devnull)
    # Report "started" only once the main process exists (or the container
    # already failed): callers may signal it the moment start() returns.
    init = main = None
    gone = died = False
    turns = 0
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        init, main, gone = find_pids(proc.pid)
        if main is not None or gone:
            break
        turns += 1
        # Every few ms only (it is rare, and this loop is on every start's path).
        if init is not None and turns % 32 == 0 and _died_in_setup(init, argv[0]):
            died = True
            break
        time.sleep(0.0002)
    if main is None and not gone:
        failure = _start_failure(proc, lxc_log, died)
        if failure is not None:
            os.close(out_r)  # lxc-execute's own words: the same as lxc.log's
            os.close(err_r)
            if host_mnt_ns is not None:
                _leave_mount_namespace(host_mnt_ns)
            log.close()
            log.release()
            # It never ran: the container stays as it was (created, or exited
            # from its last run), and without a run.spec a removal knows that
            # nothing of it can be running.
            try:
                os.unlink(os.path.join(ctrdir, "run.spec"))
            except FileNotFoundError:
                pass
            # Whole lines, in one write that a pipe keeps in one piece (PIPE_BUF).
            answer = f"{START_FAILED}\n{failure}".encode(errors="replace")
            os.write(ready_fd, answer[: answer.rfind(b"\n", 0, 4000)] if len(answer) > 4000 else answer)
            return 1
    init_fd = main_fd = None
    try:
        if init is not None:
            init_fd = os.pidfd_open(init)
        if main is not None:
            main_fd = os.pidfd_open(main)
    except OSError:  # it has exited already
        pass
    oom = _OomWatch(oom_path if init is not None else "")
    me = os.getpid()
    state: dict[str, object] = {
        "status": "running",
        "shim_pid": me,
        "shim_start": process_start_time(me),
        "lxc_pid": proc.pid,
        "init_pid": init,
        "main_pid": main,
        "started_at": time.time(),
        "finished_at": None,
        "exit_code": None,
        "oom_killed": False,
    }
    # Not fsync'ed (it is on every start's path): after a power cut nothing
    # runs any more, so a lost "running" record costs nothing. The exit code
    # at the end is written durably.
    try:
        write_json_atomic(state_path, state, durable=False)
    except OSError:
        log.release()
        write_json_atomic(state_path, state, durable=False)
    os.write(ready_fd, b"ok")
    os.close(ready_fd)

    MAIN, OOM = 0, 3  # noqa: N806
    streams = {out_r: STDOUT, err_r: STDERR}
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    if main_fd is not None:
        streams[main_fd] = MAIN
        poller.register(main_fd, select.POLLIN)
    elif gone or (main is not None and init_fd is not None):
        _end_container(init_fd)  # the main process is gone already
    if oom.fd is not None:
        streams[oom.fd] = OOM
        poller.register(oom.fd, oom.events)
    while out_r in streams or err_r in streams:
        events = poller.poll(5 if oom.pending else None)
        if oom.pending:
            oom.check()
        for fd, _ in events:
            kind = streams.get(fd)
            if kind == MAIN:
                # liblxc's init waits for every orphan before it exits; Docker's
                # rule (and ours) is that the container ends with its main process.
                poller.unregister(fd)
                del streams[fd]
                os.close(fd)
                _end_container(init_fd)
                continue
            if kind == OOM:
                if not oom.check(event=True):
                    poller.unregister(fd)
                    del streams[fd]
                continue
            if kind is None:
                continue
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not data:
                poller.unregister(fd)
                del streams[fd]
                os.close(fd)
                continue
            log.write(kind, data)
    code = proc.wait()
    if host_mnt_ns is not None:
        # Back to the host's mounts: the namespace with the idmapped layers
        # dies with its last process (lxc-execute has gone), before anything
        # (auto-removal) deletes the container's dir.
        _leave_mount_namespace(host_mnt_ns)
    oom.check()
    oom.close()
    if oom.pending and code == 137:
        oom.killed = True  # the OOM began, SIGKILL came, the cgroup went before the count
    if init_fd is not None:
        os.close(init_fd)
    if main_fd is not None and main_fd in streams:
        os.close(main_fd)
    if code < 0:  # lxc-execute itself killed by a signal
        code = 128 - code
    if code != 0:
        # When liblxc itself failed (bad mount, missing command), say so in the
        # container's stderr instead of leaving only an exit code.
        for line in _lxc_errors(lxc_log)[-5:]:
            log.write(STDERR, f"[liblxc] {line}\n".encode())
    log.close()
    log.release()  # the container is gone: its last word needs the room now
    state.update(status="exited", finished_at=time.time(), exit_code=code, oom_killed=oom.killed)
    if auto_remove:
        _remove_dir(ctrdir)
    else:
        write_json_atomic(state_path, state)
    return 0


def _remove_dir(ctrdir: str) -> None:
    """Remove the container like ``Container.remove()`` does: renamed into the
    store's tmp/ first, so that readers see all of it or nothing, never a
    directory without its state (which would read as "created")."""
    import shutil  # noqa: PLC0415  (only needed here, at the very end)
    import tempfile  # noqa: PLC0415

    tmp = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ctrdir))), "tmp")
    try:
        doomed = tempfile.mkdtemp(prefix="rm-ctr-", dir=tmp)
    except OSError:
        shutil.rmtree(ctrdir, ignore_errors=True)
        return
    try:
        os.rename(ctrdir, os.path.join(doomed, os.path.basename(ctrdir)))
    except FileNotFoundError:
        pass  # removed by someone else meanwhile
    except OSError:
        shutil.rmtree(ctrdir, ignore_errors=True)
    shutil.rmtree(doomed, ignore_errors=True)


def read_spec(ctrdir: str) -> tuple[bool, str, int, int, dict[str, str], list[str]]:
    """(auto_remove, OOM counter path, log size cap (-1: none), log files,
    lxc-execute's environment, lxc-execute argv) from ``run.spec``."""
    with open(os.path.join(ctrdir, "run.spec"), "rb") as fh:
        fields = [f.decode("utf-8", "surrogateescape") for f in fh.read().split(b"\0")]
    n = int(fields[4])
    env = dict(item.split("=", 1) for item in fields[5 : 5 + n])
    return fields[0] == "1", fields[1], int(fields[2]), int(fields[3]), env, fields[5 + n :]


def write_spec(
    ctrdir: str,
    auto_remove: bool,
    oom_path: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log_max_size: int = -1,
    log_max_files: int = 1,
) -> None:
    """The other half of read_spec, for the library (atomic: temp + rename).
    0600: the environment may hold secrets."""
    tmp = os.path.join(ctrdir, f"run.spec.{os.getpid()}.tmp")
    items = [f"{k}={v}" for k, v in env.items()]
    fields = ["1" if auto_remove else "0", oom_path, str(log_max_size), str(log_max_files), str(len(items))]
    fields += [*items, *argv]
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as fh:
        fh.write(b"\0".join(f.encode("utf-8", "surrogateescape") for f in fields))
    os.replace(tmp, os.path.join(ctrdir, "run.spec"))


def _detach(keep_fd: int) -> None:
    """Leave the caller's session and terminal: a Ctrl-C or hang-up there must
    not reach a supervisor (or the container it runs). Nothing inherited stays
    open but ``keep_fd`` (a zygote's socket and its client's, the starter's files)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 1 << 20)


def launch(ctrdir: str) -> bytes:
    """Start the supervisor of the container at ``ctrdir`` in a new session;
    return b"ok" once the container runs, else the error to report."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid > 0:
        # This process only waits until the supervisor has started the
        # container, then exits: its parent reaps it and no zombie is left.
        os.close(ready_w)
        msg = os.read(ready_r, 4096)
        os.close(ready_r)
        return msg or b"error: the supervisor died before starting the container"
    os.close(ready_r)
    become_supervisor(ctrdir, ready_w)


def become_supervisor(ctrdir: str, ready_w: int) -> NoReturn:
    """Turn this (freshly forked) process into the supervisor of the container
    at ``ctrdir``: it reports b"ok" or an error on ``ready_w``, and exits when
    the container has."""
    _detach(ready_w)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        auto_remove, oom_path, log_max_size, log_max_files, env, command = read_spec(ctrdir)
        code = supervise(ctrdir, auto_remove, oom_path, command, ready_w, log_max_size, log_max_files, env)
    except BaseException as err:  # noqa: BLE001  (the last word must reach the caller)
        try:
            os.write(ready_w, f"error: supervisor failed: {err!r}".encode())
        except OSError:
            pass
        import traceback  # noqa: PLC0415
        with open(os.path.join(ctrdir, "supervisor.err"), "a") as fh:
            traceback.print_exc(file=fh)
        code = 1
    os._exit(code)


# -- the zygote ------------------------------------------------------------------
#
# A fresh interpreter per container costs ~15 ms and ~2.5 MB that no other
# process shares; a fork of the caller costs in proportion to the caller's
# memory, and is unsafe in a caller that runs threads. The zygote is one small
# interpreter per store root that forks the supervisors instead: they share
# its pages (copy-on-write), so each costs ~0.7 MB, and a start skips the
# interpreter's start-up. It is started on demand, listens on a socket in ROOT/bin
# (mode 0600, and it serves only its own uid), and exits once idle for
# ZYGOTE_IDLE seconds or when asked to (Engine.close()). Supervisors never
# depend on it: it may exit or die at any time without harm to them.

ZYGOTE_IDLE = 10.0
QUIT = "\0quit"
_zygote_lock: int | None = None  # the zygote's flock; its forks must not keep it


def _read_request(fd: int) -> str:
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not data.endswith(b"\n") and len(data) < 8192:
        if not poller.poll(2000):
            break
        chunk = os.read(fd, 8192)
        if not chunk:
            break
        data += chunk
    return data[:-1].decode("utf-8", "surrogateescape") if data.endswith(b"\n") else ""


def _serve(conn: int, containers_dir: str, listener: object) -> bool:
    """Answer one request on ``conn``; False when it was the request to quit."""
    import _socket  # noqa: PLC0415

    try:
        cred = _socket.socket(fileno=os.dup(conn))
        try:
            _, uid, _ = struct.unpack("3i", cred.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))
        finally:
            cred.close()
        if uid != os.geteuid():
            return True
        ctrdir = _read_request(conn)
        if ctrdir == QUIT:
            return False
        parent = os.path.dirname(ctrdir.rstrip("/"))
        if not ctrdir or parent != containers_dir or "/." in ctrdir[len(parent) :]:
            os.write(conn, b"error: not a container of this store")
            return True
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                listener.close()  # type: ignore[attr-defined]
                if _zygote_lock is not None:
                    os.close(_zygote_lock)
                os.write(conn, launch(ctrdir))
            except BaseException as err:  # noqa: BLE001
                try:
                    os.write(conn, f"error: {err!r}".encode())
                except OSError:
                    pass
                code = 1
            os._exit(code)
        return True
    except OSError:
        return True
    finally:
        os.close(conn)


def zygote(sock_path: str, containers_dir: str) -> int:
    """``--zygote SOCK CONTAINERS_DIR``: fork into the background and serve;
    exit 0 once listening (or when another zygote already holds SOCK)."""
    import _socket  # noqa: PLC0415
    import fcntl  # noqa: PLC0415
    import gc  # noqa: PLC0415

    global _zygote_lock  # noqa: PLW0603

    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        os.close(ready_w)
        msg = os.read(ready_r, 4096)
        if msg == b"ok":
            return 0
        os.write(2, (msg or b"error: the zygote died before it listened") + b"\n")
        return 1
    os.close(ready_r)
    _detach(ready_w)
    os.chdir("/")
    try:
        lock = os.open(sock_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.write(ready_w, b"ok")  # another zygote serves this root
            os._exit(0)
        _zygote_lock = lock
        try:
            os.unlink(sock_path)  # left by a zygote that was killed
        except FileNotFoundError:
            pass
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        listener.bind(sock_path)
        os.chmod(sock_path, 0o600)
        listener.listen(128)
    except OSError as err:
        os.write(ready_w, f"error: the zygote cannot listen on {sock_path}: {err}".encode())
        os._exit(1)
    os.write(ready_w, b"ok")
    os.close(ready_w)
    gc.collect()
    gc.freeze()  # the supervisors it forks then leave these objects' pages shared
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    serving = True
    while serving:
        if not poller.poll(int(ZYGOTE_IDLE * 1000)):
            break
        conn, _ = listener._accept()  # type: ignore[attr-defined]  # (the fd, not a socket object)
        serving = _serve(conn, containers_dir, listener)
        while True:  # reap the children that relayed their supervisor's start
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
    # Stop taking requests, then answer those already queued: a client that
    # connected before the unlink is served; one after finds no socket and
    # starts another zygote.
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener._accept()  # type: ignore[attr-defined]  # (the fd, not a socket object)
        except OSError:
            break
        os.set_blocking(conn, True)
        _serve(conn, containers_dir, listener)
    listener.close()
    os._exit(0)


def main(argv: list[str]) -> int:
    if argv[1] == "--zygote":
        return zygote(argv[2], argv[3])
    msg = launch(argv[1])
    if msg == b"ok":
        return 0
    # os.write, not sys.stderr: in a fork of the caller, sys.stderr may be
    # the caller's own object (a notebook's stream), which is no use here.
    os.write(2, msg + b"\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
