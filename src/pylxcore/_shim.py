"""The container supervisor: one small process per running container.

It outlives the Python process that started the container (like Docker's
containerd-shim or podman's conmon): it runs ``lxc-execute``, writes the
container's stdout and stderr apart with timestamps into its log, and records
the exit code and whether the kernel OOM-killed it. Then it exits.

It imports only the standard library and is started by path with ``python
-I -S`` so that it starts in a few milliseconds. Run as
``python -I -S _shim.py CONTAINER_DIR``; it reads ``CONTAINER_DIR/run.json``.

Log format: records of ``struct "<dBI"`` (unix time, stream 1=stdout
2=stderr, length) followed by that many bytes. One ``write`` per record on an
O_APPEND file, so a reader sees whole records or a short tail it retries.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import time

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
    return int(fields[19])


def write_json_atomic(path: str, obj: object) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_record(fd: int, stream: int, data: bytes) -> None:
    os.write(fd, RECORD.pack(time.time(), stream, len(data)) + data)


def _read_oom(path: str) -> bool:
    try:
        with open(path) as fh:
            words = fh.read().split()
    except OSError:
        return False
    return len(words) >= 2 and words[0] == "oom_kill" and int(words[1]) > 0


def supervise(spec: dict, ready_fd: int) -> int:
    ctrdir = spec["dir"]
    state_path = os.path.join(ctrdir, "state.json")
    oom_path = os.path.join(ctrdir, "oom")
    lxc_log = os.path.join(ctrdir, "lxc.log")
    for stale in (oom_path, lxc_log):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    log_fd = os.open(os.path.join(ctrdir, "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        proc = subprocess.Popen(spec["argv"], stdin=devnull, stdout=out_w, stderr=err_w, close_fds=True)
    except OSError as err:
        os.write(ready_fd, f"error: cannot run {spec['argv'][0]}: {err}".encode())
        return 1
    os.close(out_w)
    os.close(err_w)
    os.close(devnull)
    me = os.getpid()
    state = {
        "status": "running",
        "shim_pid": me,
        "shim_start": process_start_time(me),
        "lxc_pid": proc.pid,
        "started_at": time.time(),
        "finished_at": None,
        "exit_code": None,
        "oom_killed": False,
    }
    write_json_atomic(state_path, state)
    os.write(ready_fd, b"ok")
    os.close(ready_fd)

    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ, STDOUT)
    sel.register(err_r, selectors.EVENT_READ, STDERR)
    while sel.get_map():
        for key, _ in sel.select():
            fd = int(key.fd)  # type: ignore[arg-type]
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not data:
                sel.unregister(fd)
                os.close(fd)
                continue
            write_record(log_fd, key.data, data)
    code = proc.wait()
    if code < 0:  # lxc-execute itself killed by a signal
        code = 128 - code
    if code != 0:
        # When liblxc itself failed (bad mount, missing command), say so in the
        # container's stderr instead of leaving only an exit code.
        try:
            with open(lxc_log, errors="replace") as fh:
                lines = [ln.strip() for ln in fh if " ERROR " in ln][-5:]
        except OSError:
            lines = []
        for line in lines:
            write_record(log_fd, STDERR, f"[liblxc] {line}\n".encode())
    os.close(log_fd)
    state.update(
        status="exited",
        finished_at=time.time(),
        exit_code=code,
        oom_killed=_read_oom(oom_path),
    )
    if spec.get("auto_remove"):
        shutil.rmtree(ctrdir, ignore_errors=True)
    else:
        write_json_atomic(state_path, state)
    return 0


def main(argv: list[str]) -> int:
    ctrdir = argv[1]
    with open(os.path.join(ctrdir, "run.json")) as fh:
        spec = json.load(fh)
    spec["dir"] = ctrdir
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid > 0:
        # The parent only waits until the supervisor has started the container,
        # then exits: the caller reaps it at once and no zombie is left behind.
        os.close(ready_w)
        msg = os.read(ready_r, 4096)
        if msg == b"ok":
            return 0
        sys.stderr.write((msg or b"error: the supervisor died before starting the container").decode() + "\n")
        return 1
    os.close(ready_r)
    os.setsid()  # a Ctrl-C in the caller's terminal must not reach the container
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        code = supervise(spec, ready_w)
    except BaseException as err:  # noqa: BLE001  (the last word must reach the caller)
        try:
            os.write(ready_w, f"error: supervisor failed: {err!r}".encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
