"""The supervisor process: one per running container, outliving the Python
process that started it (like Docker's containerd-shim or podman's conmon).

It runs ``lxc-execute`` as its ``run.spec`` says (see runspec), writes the
container's stdout and stderr apart with timestamps into its log (see
logfile), records in ``state.json`` that the container runs, then its exit
code and whether the kernel OOM-killed it (see state, oom). Then it exits,
removing the container first when it was run with auto-removal.

When liblxc cannot start the container (lxc-execute fails before the main
process exists), the supervisor answers START_FAILED and liblxc's ERROR lines
instead of "ok", and leaves the container as it was: see
lxcexec.start_failure and protocol.
"""

from __future__ import annotations

import os
import select
import time

from pylxcore.procs import Child, process_start_time
from pylxcore.supervisor.logfile import STDERR, STDOUT, LogWriter
from pylxcore.supervisor.lxcexec import died_in_setup, end_container, find_pids, lxc_errors, start_failure
from pylxcore.supervisor.mounts import leave_mount_namespace, userns_rootfs
from pylxcore.supervisor.oom import OomWatch
from pylxcore.supervisor.protocol import OK, START_FAILED
from pylxcore.supervisor.runspec import RUN_SPEC, RunSpec, UsernsSpec
from pylxcore.supervisor.state import STATE_FILE, write_state

TYPE_CHECKING = False  # (typing itself would cost a fresh supervisor ~10 ms)
if TYPE_CHECKING:
    from typing import NoReturn


def supervise(ctrdir: str, spec: RunSpec, ready_fd: int) -> int:
    """Run the container at ``ctrdir`` as ``spec`` says and supervise it to
    its end; the exit status for this process. Answers on ``ready_fd`` (see
    protocol): OK once the main process runs, else the error. Raises OSError
    when even its state cannot be written."""
    state_path = os.path.join(ctrdir, STATE_FILE)
    lxc_log = os.path.join(ctrdir, "lxc.log")
    # Emptied of the last run's lines, and 0600 like the log: liblxc appends
    # to it, and would create it 0640.
    fd = os.open(lxc_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    log = LogWriter(ctrdir, spec.log_max_size, spec.log_max_files)
    host_mnt_ns = None
    if UsernsSpec.exists(ctrdir):
        # Keep a way back to the host's mount namespace: nothing may touch the
        # container's dir while the idmapped image layers are mounted in it.
        host_mnt_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            userns_rootfs(ctrdir)
        except OSError as err:
            leave_mount_namespace(host_mnt_ns)
            msg = f"error: cannot mount the container's root for its user namespace: {err}"
            os.write(ready_fd, msg.encode())
            return 1
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        proc = Child(spec.argv, devnull, out_w, err_w, spec.env)
    except OSError as err:
        os.write(ready_fd, f"error: cannot run {spec.argv[0]}: {err}".encode())
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
        if init is not None and turns % 32 == 0 and died_in_setup(init, spec.argv[0]):
            died = True
            break
        time.sleep(0.0002)
    if main is None and not gone:
        failure = start_failure(proc, lxc_log, died)
        if failure is not None:
            os.close(out_r)  # lxc-execute's own words: the same as lxc.log's
            os.close(err_r)
            if host_mnt_ns is not None:
                leave_mount_namespace(host_mnt_ns)
            log.close()
            log.release()
            # It never ran: the container stays as it was (created, or exited
            # from its last run), and without a run.spec a removal knows that
            # nothing of it can be running.
            try:
                os.unlink(os.path.join(ctrdir, RUN_SPEC))
            except FileNotFoundError:
                pass
            # Whole lines, in one write that a pipe keeps in one piece (PIPE_BUF).
            answer = START_FAILED + b"\n" + failure.encode(errors="replace")
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
    oom = OomWatch(spec.oom_path if init is not None else "")
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
        write_state(state_path, state, durable=False)
    except OSError:
        log.release()
        write_state(state_path, state, durable=False)
    os.write(ready_fd, OK)
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
        end_container(init_fd)  # the main process is gone already
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
                end_container(init_fd)
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
        leave_mount_namespace(host_mnt_ns)
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
        for line in lxc_errors(lxc_log)[-5:]:
            log.write(STDERR, f"[liblxc] {line}\n".encode())
    log.close()
    log.release()  # the container is gone: its last word needs the room now
    state.update(status="exited", finished_at=time.time(), exit_code=code, oom_killed=oom.killed)
    if spec.auto_remove:
        _remove_dir(ctrdir)
    else:
        write_state(state_path, state)
    return 0


def _remove_dir(ctrdir: str) -> None:
    """Remove the container like ``Container.remove()`` does: renamed into the
    store's tmp/ first, so that readers see all of it or nothing, never a
    directory without its state (which would read as "created")."""
    import shutil  # (only needed here, at the very end)
    import tempfile

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


def detach(keep_fd: int) -> None:
    """Leave the caller's session and terminal: a Ctrl-C or hang-up there must
    not reach a supervisor (or the container it runs; main() ignores those
    signals too). Nothing inherited stays open but ``keep_fd`` (a zygote's
    socket and its client's, the starter's files). Raises OSError."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 1 << 20)


def fork_supervisor(ctrdir: str) -> bytes:
    """Fork the supervisor of the container at ``ctrdir``, in a session of its
    own; its answer (see protocol): OK once the container runs, else the
    error. Raises OSError when it cannot fork."""
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
    _become_supervisor(ctrdir, ready_w)


def _become_supervisor(ctrdir: str, ready_w: int) -> NoReturn:
    """Turn this (freshly forked) process into the supervisor of the container
    at ``ctrdir``: it answers on ``ready_w``, and exits when the container has."""
    detach(ready_w)
    try:
        code = supervise(ctrdir, RunSpec.read(ctrdir), ready_w)
    except BaseException as err:  # noqa: BLE001  (the last word must reach the caller)
        try:
            os.write(ready_w, f"error: supervisor failed: {err!r}".encode())
        except OSError:
            pass
        import traceback

        with open(os.path.join(ctrdir, "supervisor.err"), "a") as fh:
            traceback.print_exc(file=fh)
        code = 1
    os._exit(code)
