"""lxc-execute and the container it runs, as the supervisor sees them:
lxc-execute started (its output on pipes, or on a terminal), liblxc's init
and the main process found by their namespace pids, the container ended by
pidfd, and a container liblxc could not start told apart from one whose
command exited at once."""

from __future__ import annotations

import os
import signal
import time

from pylxcore.procs import Child, read_stat

# Where read_stat's fields hold field 52 of /proc/PID/stat, the wait status (Linux 3.5 and later).
_EXIT_STATUS = 52 - 3
# What lxc-execute logs (in lxc.log, at ERROR level) when liblxc's start() failed.
_LXC_START_FAILED = "Failed run an application inside container"


def children(pid: int) -> list[int]:
    # (Files read as bytes here and below: text mode runs the codecs' Python
    # code, whose pages every supervisor would then copy from the zygote's.)
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out += [int(x) for x in fh.read().split()]
        except OSError:
            continue
    return out


def _nspid(pid: int) -> int | None:
    """The pid of ``pid`` inside its own (innermost) pid namespace."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            data = fh.read()
        start = data.index(b"\nNSpid:")
        return int(data[start : data.index(b"\n", start + 1)].split()[-1])
    except (OSError, ValueError):
        return None


def find_pids(lxc_pid: int) -> tuple[int | None, int | None, bool]:
    """(init, main, main_gone) on the host for the container run by ``lxc-execute``
    process ``lxc_pid``. liblxc's init is pid 1 of the container and starts the
    command as pid 2: an orphan reparented to init is never pid 2, so this tells
    the main process apart even after it has gone. Raises nothing."""
    for child in children(lxc_pid):
        if _nspid(child) != 1:
            continue
        kids = children(child)
        main = next((k for k in kids if _nspid(k) == 2), None)
        return child, main, main is None and bool(kids)
    return None, None, False


def end_container(init_fd: int | None) -> None:
    """SIGTERM to liblxc's init (``init_fd``: its pidfd, or None: nothing to
    do): it sends SIGTERM to every process left in the container, SIGKILL a
    second later, then exits with the main process's code. By pidfd: init may
    have exited and its pid been reused meanwhile. Raises nothing."""
    if init_fd is None:
        return
    try:
        signal.pidfd_send_signal(init_fd, signal.SIGTERM)
    except ProcessLookupError:
        pass


def lxc_errors(lxc_log: str) -> list[str]:
    """liblxc's ERROR lines in ``lxc_log``, in order (the cause first); none
    when it cannot be read. Raises nothing."""
    try:
        with open(lxc_log, errors="replace") as fh:
            return [ln.strip() for ln in fh if " ERROR " in ln]
    except OSError:
        return []


def died_in_setup(pid: int, program: str) -> bool:
    """Whether the container's first process ``pid`` was killed while liblxc
    set it up: a zombie named after lxc-execute (``program``), killed by a
    signal. The name alone does not tell: liblxc's init keeps lxc-execute's
    name, and a container whose command ran and exited before the supervisor
    saw it leaves init a zombie by that name too, for a moment; but init then
    exits, it is not killed. Raises nothing."""
    stat = read_stat(pid)
    name = os.path.basename(program).encode()[:15]  # the kernel keeps 15 bytes of a name
    if stat is None or stat[1][0] != b"Z" or stat[0] != name:
        return False
    # Field 52: the wait status of a process that has exited.
    return len(stat[1]) <= _EXIT_STATUS or os.WIFSIGNALED(int(stat[1][_EXIT_STATUS]))


def start_failure(proc: Child, lxc_log: str, died: bool) -> str | None:
    """liblxc's reason when it could not start the container, else None.

    Asked when lxc-execute (``proc``) has ended (or the container's first
    process died) before the main process was ever seen. A main process that
    exits at once can look the same from here, so the sign is liblxc's own:
    lxc-execute logs _LXC_START_FAILED at ERROR level when, and only when,
    liblxc's start() failed; the exit status of a main process that ran,
    whatever it is, never fails start(). (lxc.log lies in the container's dir
    on the host, out of the container's reach.) A first process that ``died``
    in setup is a failure too, though liblxc may then wait on it forever (seen
    with memory limits of some kB): it gets a moment to report, then SIGKILL.
    Raises nothing."""
    if died:
        end = time.monotonic() + 2
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    elif proc.code is None or proc.code == 0:
        return None  # still running (no main process after 30 s), or a main process that exited 0
    lines = lxc_errors(lxc_log)
    if not died and not any(_LXC_START_FAILED in line for line in lines):
        return None
    return "\n".join(lines) or "the container's first process died while liblxc set it up (no error logged)"


class Run:
    """One run of lxc-execute: the process, its output pipes (with a
    terminal: its master as ``out_r``, ``err_r`` -1), its stdin pipe's end
    (or -1), and the container's init and main process (pids, and pidfds
    once it runs)."""

    __slots__ = ("gone", "init", "init_fd", "main", "main_fd", "out_r", "err_r", "proc", "stdin_w")

    def __init__(self, proc: Child, out_r: int, err_r: int, stdin_w: int = -1) -> None:
        self.proc, self.out_r, self.err_r, self.stdin_w = proc, out_r, err_r, stdin_w
        self.init: int | None = None
        self.main: int | None = None
        self.init_fd: int | None = None
        self.main_fd: int | None = None
        self.gone = False


def spawn_on_pipes(argv: list[str], env: dict[str, str], stdin: bool) -> Run | str:
    """Start lxc-execute (``argv``, with ``env``) with its stdout and stderr
    on pipes, its stdin on /dev/null or (``stdin``) a pipe; the run, or an
    ``error:`` line."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin else (os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC), -1)
    try:
        return Run(Child(argv, in_r, out_w, err_w, env), out_r, err_r, in_w)
    except OSError as err:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        return f"error: cannot run {argv[0]}: {err}"
    finally:
        os.close(out_w)
        os.close(err_w)
        os.close(in_r)


def spawn_on_terminal(argv: list[str], env: dict[str, str], size: tuple[int, int]) -> Run | str:
    """Start lxc-execute (``argv``, with ``env``) on a new pty of the host's
    of ``size`` (rows, columns), as its controlling terminal (see attachsock
    why; liblxc gives the container's terminal that size); the run (the
    master as its output), or an ``error:`` line."""
    from pylxcore.supervisor.attachsock import make_raw, set_size

    master, peer = os.openpty()
    try:
        set_size(master, *size)  # (a new pty has none) until a caller gives its own
        make_raw(master)  # (before liblxc takes it over: see make_raw)
        proc = Child(argv, -1, -1, -1, env, terminal=os.ttyname(peer))
    except OSError as err:
        os.close(master)
        return f"error: cannot run {argv[0]} on a terminal: {err}"
    finally:
        os.close(peer)
    return Run(proc, master, -1)
