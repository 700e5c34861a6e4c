"""The supervisor process: one per running container, outliving the Python
process that started it (like Docker's containerd-shim or podman's conmon).

It runs ``lxc-execute`` as its ``run.spec`` says (see runspec), writes the
container's stdout and stderr apart with timestamps into its log (see
logfile), records in ``state.json`` that the container runs, then its exit
code and whether the kernel OOM-killed it (see state, oom). As its
``policy.spec`` says (see policy), it starts the container again after it
ended, and runs its healthcheck meanwhile (see health); it appends what
happens (start, die, oom, health_status) to the store's events log (see
events). A container created with ``tty`` or ``stdin`` runs on a terminal
or with its stdin open, and callers attach to it through a socket the
supervisor holds (see attachsock). Then it exits, removing the container
first when it was run with auto-removal.

When liblxc cannot start the container (lxc-execute fails before the main
process exists), the supervisor answers START_FAILED and liblxc's ERROR lines
instead of "ok", and leaves the container as it was: see
lxcexec.start_failure and protocol.
"""

from __future__ import annotations

import os
import select
import time

from pylxcore.procs import detach, owner_tag, process_start_time
from pylxcore.supervisor.events import append_event
from pylxcore.supervisor.health import HealthCheck
from pylxcore.supervisor.logfile import STDERR, STDOUT, LogWriter
from pylxcore.supervisor.lxcexec import (
    Run,
    died_in_setup,
    end_container,
    find_pids,
    lxc_errors,
    spawn_on_pipes,
    spawn_on_terminal,
    start_failure,
)
from pylxcore.supervisor.mounts import leave_mount_namespace, userns_rootfs
from pylxcore.supervisor.oom import OomWatch
from pylxcore.supervisor.policy import STOP_MARK, Backoff, PolicySpec, should_restart
from pylxcore.supervisor.protocol import OK, START_FAILED
from pylxcore.supervisor.runspec import RUN_SPEC, RunSpec, UsernsSpec
from pylxcore.supervisor.state import STATE_FILE, write_state

# How long after its start a container's last run keeps its output and exit
# code for the caller that started it to attach (see attachsock.end_run).
LINGER = 2.0

TYPE_CHECKING = False  # (typing itself would cost a fresh supervisor ~10 ms)
if TYPE_CHECKING:
    from typing import NoReturn

    from pylxcore.supervisor.attachsock import Attachments


def _launch(spec: RunSpec, lxc_log: str) -> Run | str:
    """Start lxc-execute as ``spec`` says and wait until the main process
    runs (or the container already ended); the run, else why it could not
    start: liblxc's ERROR lines after START_FAILED, or an ``error:`` line.
    Raises OSError."""
    # Emptied of the last run's lines, and 0600 like the log: liblxc appends
    # to it, and would create it 0640.
    fd = os.open(lxc_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    if spec.tty:
        run_or_error = spawn_on_terminal(spec.argv, spec.env, spec.console_size)
    else:
        run_or_error = spawn_on_pipes(spec.argv, spec.env, spec.stdin)
    if isinstance(run_or_error, str):
        return run_or_error
    run = run_or_error
    # Report "started" only once the main process exists (or the container
    # already failed): callers may signal it the moment start() returns.
    proc = run.proc
    died = False
    turns = 0
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        run.init, run.main, run.gone = find_pids(proc.pid)
        if run.main is not None or run.gone:
            break
        turns += 1
        # Every few ms only (it is rare, and this loop is on every start's path).
        if run.init is not None and turns % 32 == 0 and died_in_setup(run.init, spec.argv[0]):
            died = True
            break
        time.sleep(0.0002)
    if run.main is None and not run.gone:
        failure = start_failure(proc, lxc_log, died)
        if failure is not None:
            for fd in (run.out_r, run.err_r, run.stdin_w):  # lxc-execute's own words: lxc.log's
                if fd >= 0:
                    os.close(fd)
            return (START_FAILED + b"\n").decode() + failure
    try:
        if run.init is not None:
            run.init_fd = os.pidfd_open(run.init)
        if run.main is not None:
            run.main_fd = os.pidfd_open(run.main)
    except OSError:  # it has exited already
        pass
    return run


def _pump(
    run: Run, spec: RunSpec, log: LogWriter, health: HealthCheck | None, att: Attachments | None
) -> tuple[int, bool]:
    """Write the run's output into the log and to the callers attached
    (``att``), and run its healthcheck, until lxc-execute has ended; (its
    exit code, whether the kernel OOM-killed a process of the container)."""
    oom = OomWatch(spec.oom_path if run.init is not None else "")
    MAIN, OOM, HEALTH = 0, 3, 4  # noqa: N806
    streams = {run.out_r: STDOUT}
    if run.err_r >= 0:
        streams[run.err_r] = STDERR
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    if att is not None:
        from pylxcore.supervisor.attachsock import ERR, OUT

        att.register(poller)
        att.start_run(run.out_r if spec.tty else run.stdin_w, list(streams))
        kinds = {STDOUT: OUT, STDERR: ERR}
    if run.main_fd is not None:
        streams[run.main_fd] = MAIN
        poller.register(run.main_fd, select.POLLIN)
    elif run.gone or (run.main is not None and run.init_fd is not None):
        end_container(run.init_fd)  # the main process is gone already
    if oom.fd is not None:
        streams[oom.fd] = OOM
        poller.register(oom.fd, oom.events)
    while run.out_r in streams or run.err_r in streams:
        wait = 5 if oom.pending else None
        if health is not None:
            wait = min(wait or 1 << 30, health.wait_ms())
        if att is not None and att.paused:
            wait = min(wait or 1 << 30, 100)
        events = poller.poll(wait)
        if oom.pending:
            oom.check()
        for fd, what in events:
            if att is not None:
                if att.owns(fd):
                    att.on_event(fd, what)
                    continue
                if fd == att.input and what & select.POLLOUT:  # the terminal takes input again
                    att.flush_input()
                    if not what & ~select.POLLOUT:
                        continue
            kind = streams.get(fd, HEALTH if health is not None and fd in health.fds else None)
            if kind == MAIN:
                # liblxc's init waits for every orphan before it exits; Docker's
                # rule (and ours) is that the container ends with its main process.
                poller.unregister(fd)
                del streams[fd]
                os.close(fd)
                if health is not None:
                    health.stop(poller)
                    health = None
                # A moment for init to end by itself when nothing else is
                # left: once signalled, it complains about cgroup v1 files on
                # its stderr, which the container's terminal would show.
                if run.init_fd is not None and not select.select([run.init_fd], [], [], 0.05)[0]:
                    end_container(run.init_fd)
                continue
            if kind == HEALTH and health is not None:
                health.on_fd(fd, poller)
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
            except (InterruptedError, BlockingIOError):
                continue
            except OSError:  # EIO: a terminal whose other end has closed
                data = b""
            if not data:
                poller.unregister(fd)
                del streams[fd]
                if att is not None:
                    att.output_closed(fd)
                os.close(fd)
                continue
            log.write(kind, data)
            if att is not None:
                att.output(kinds[kind], data)
        if health is not None:
            health.tick(poller)
        if att is not None:
            att.tick()
    if health is not None:
        health.stop(poller)
    code = run.proc.wait()
    oom.check()
    oom.close()
    if oom.pending and code == 137:
        oom.killed = True  # the OOM began, SIGKILL came, the cgroup went before the count
    if run.init_fd is not None:
        os.close(run.init_fd)
    if run.main_fd is not None and run.main_fd in streams:
        os.close(run.main_fd)
    if code < 0:  # lxc-execute itself killed by a signal
        code = 128 - code
    return code, oom.killed


def _current_policy(ctrdir: str, last: PolicySpec) -> PolicySpec:
    """``ctrdir``'s policy.spec now (``update`` changes its restart policy,
    ``rename`` its name, while it runs); ``last`` when it cannot be read."""
    try:
        return PolicySpec.read(ctrdir)
    except (OSError, ValueError):
        return last


def _pause(mark: str, seconds: float) -> bool:
    """Wait ``seconds`` before a restart; False as soon as the user stopped
    the container meanwhile (``mark`` exists: see policy.STOP_MARK)."""
    end = time.monotonic() + seconds
    while not os.path.exists(mark):
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))
    return False


def supervise(ctrdir: str, spec: RunSpec, ready_fd: int) -> int:
    """Run the container at ``ctrdir`` as ``spec`` says and supervise it to
    its end, restarting it and checking its health as its policy.spec says;
    the exit status for this process. Answers on ``ready_fd`` (see
    protocol): OK once the main process runs, else the error. Raises OSError
    when even its state cannot be written."""
    state_path = os.path.join(ctrdir, STATE_FILE)
    lxc_log = os.path.join(ctrdir, "lxc.log")
    mark = os.path.join(ctrdir, STOP_MARK)
    policy = PolicySpec.read(ctrdir)
    name = os.path.basename(ctrdir.rstrip("/"))

    def event(action: str, *, fresh: bool = False, **attributes: str) -> None:
        # The container's name as policy.spec says (a rename rewrites it):
        # read at the start and at each end of a run, and ``fresh`` for the
        # events in between.
        if policy.events:
            ctr_id, image = policy.ctr_id, policy.image
            now = (_current_policy(ctrdir, policy) if fresh else policy).name or name
            append_event(policy.events, action, ctr_id=ctr_id, name=now, image=image, attributes=attributes)

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
    att = None
    if spec.tty or spec.stdin:
        from pylxcore.supervisor.attachsock import Attachments

        att = Attachments(ctrdir, spec.tty)
    me = os.getpid()
    state: dict[str, object] = {"status": "running", "shim_pid": me, "shim_start": process_start_time(me)}
    backoff = Backoff()
    restarts = 0
    code = 0
    final = False  # (whether the state file holds the end for good, durably)
    while True:
        run = _launch(spec, lxc_log)
        if isinstance(run, str) and ready_fd >= 0:
            if att is not None:
                att.close()
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
            answer = run.encode(errors="replace")
            os.write(ready_fd, answer[: answer.rfind(b"\n", 0, 4000)] if len(answer) > 4000 else answer)
            return 1
        if isinstance(run, str):  # a restart that failed: the last run's end stands
            log.write(STDERR, f"[pylxcore] cannot restart the container: {run}\n".encode())
            state["status"] = "exited"
            break
        began = time.monotonic()
        health = None
        if policy.health_argv:
            state["health"] = "starting"

            def on_status(status: str) -> None:
                state["health"] = status
                write_state(state_path, state, durable=False)
                event(f"health_status: {status}", fresh=True)

            health = HealthCheck(ctrdir, policy, on_status)
        state.update(
            status="running",
            lxc_pid=run.proc.pid,
            init_pid=run.init,
            main_pid=run.main,
            started_at=time.time(),
            finished_at=None,
            exit_code=None,
            oom_killed=False,
            restart_count=restarts,
        )
        # Not fsync'ed (it is on every start's path): after a power cut nothing
        # runs any more, so a lost "running" record costs nothing. The exit code
        # at the end is written durably.
        try:
            write_state(state_path, state, durable=False)
        except OSError:
            log.release()
            write_state(state_path, state, durable=False)
        event("start")
        if ready_fd >= 0:
            os.write(ready_fd, OK)
            os.close(ready_fd)
            ready_fd = -1
        code, oom_killed = _pump(run, spec, log, health, att)
        if code != 0:
            # When liblxc itself failed (bad mount, missing command), say so in the
            # container's stderr instead of leaving only an exit code.
            for line in lxc_errors(lxc_log)[-5:]:
                log.write(STDERR, f"[liblxc] {line}\n".encode())
        # The policy as it is now: ``update(restart=…)`` may have changed it
        # while the container ran (docker's restart manager takes it at once),
        # and ``rename`` the name its events give.
        policy = _current_policy(ctrdir, policy)
        again = should_restart(policy.restart, code, restarts, os.path.exists(mark))
        if att is not None and not again and att.early is None:
            # The end, and a caller came: from now on (before the state says
            # "exited") no one can attach to a run that has ended.
            att.close()
        state.update(
            status="restarting" if again else "exited",
            finished_at=time.time(),
            exit_code=code,
            oom_killed=oom_killed,
        )
        # The state before the events: whoever reads it on "die" finds the end.
        # The end for good is written durably, once (stop() waits for this
        # process: a second copy of it would lengthen every stop).
        final = not again and not spec.auto_remove
        write_state(state_path, state, durable=final)
        if oom_killed:
            event("oom")
        event("die", exitCode=str(code))
        if att is not None:
            # After the state: a caller told of the end finds it written. (A
            # last run shorter than LINGER waits that long for its first caller.)
            att.end_run(code, 0.0 if again else began + LINGER)
        if not again:
            break
        if not _pause(mark, backoff.next(time.monotonic() - began)):
            state["status"] = "exited"
            final = False  # (this end is not written yet)
            break
        restarts += 1
    if att is not None:
        att.close()
    if host_mnt_ns is not None:
        # Back to the host's mounts: the namespace with the idmapped layers
        # dies with its last process (lxc-execute has gone), before anything
        # (auto-removal) deletes the container's dir.
        leave_mount_namespace(host_mnt_ns)
    log.close()
    log.release()  # the container is gone: its last word needs the room now
    if spec.auto_remove:
        _remove_dir(ctrdir)
        event("destroy")
    elif not final:
        write_state(state_path, state)
    return 0


def _remove_dir(ctrdir: str) -> None:
    """Remove the container like ``Container.remove()`` does: renamed into the
    store's tmp/ first, so that readers see all of it or nothing, never a
    directory without its state (which would read as "created"). The staging
    dir's name carries this process's owner tag, as the store's own do, so
    that ``Engine.check()`` leaves it alone while we remove it."""
    import shutil  # (only needed here, at the very end)
    import tempfile

    tmp = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ctrdir))), "tmp")
    try:
        doomed = tempfile.mkdtemp(prefix=f"rm-ctr-{owner_tag()}-", dir=tmp)
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
