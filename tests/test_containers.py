"""Containers on real liblxc (SPEC.md section 3): many at once from one image,
logs, a container that outlives the process that started it, exec, the
lifecycle, mounts, cleanup after many cycles, and notebook reprs.

Every test runs real containers through the ``engine``/``busybox`` fixtures
(conftest.py): its own store root, and afterwards no cgroup or mount of it may
remain. Times are never asserted tightly: where a test needs "before" or
"at least", it uses generous margins.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pylxcore import Engine, Limits, Mount
from pylxcore.errors import (
    Conflict,
    ContainerError,
    ContainerNotFound,
    InvalidState,
    LXCError,
    PylxcoreError,
    SpecError,
    TimeoutExpired,
)
from pylxcore.runtime.cgroups import Stats
from pylxcore.runtime.container import Container
from pylxcore.runtime.exec import ExecResult
from pylxcore.runtime.logs import LogEntry
from pylxcore.runtime.signals import signal_number
from pylxcore.runtime.state import ContainerState
from tests.conftest import until

SLEEPER = ["sleep", "3600"]


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


def tree_digest(root: Path) -> str:
    """Names, types, modes, owners, times (not atime), xattrs and bytes of a tree."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            h.update(
                f"{os.path.relpath(full, root)}|{st.st_mode:o}|{st.st_uid}|{st.st_gid}|{st.st_nlink}"
                f"|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_rdev}|".encode("utf-8", "surrogateescape")
            )
            for attr in sorted(os.listxattr(full, follow_symlinks=False)):
                h.update(attr.encode() + os.getxattr(full, attr, follow_symlinks=False))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def layer_dirs(engine: Engine, image: str) -> list[Path]:
    return [engine.store.layer_dir(k) for k in engine.images.record(image).layers]


def our_processes(engine: Engine) -> list[str]:
    """Host processes that refer to this engine's root (shim, lxc-execute) or
    sit in one of its cgroups."""
    found = []
    marker = f"pylxcore-{engine.store.root_id}-"
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/cgroup") as fh:
                cgroups = fh.read()
        except OSError:
            continue
        if str(engine.root) in cmdline or marker in cgroups:
            found.append(f"{pid}: {cmdline}")
    return found


def cgroup_dirs() -> set[str]:
    """Every cgroup directory on the host, in every hierarchy (v1 and the unified one)."""
    out = set()
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not hierarchy.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(hierarchy):
            out.update(os.path.join(dirpath, d) for d in dirnames)
    return out


# -- 1. many containers from one image -------------------------------------------


def test_twenty_containers_from_one_image_are_isolated_and_leave_the_image_unchanged(
    engine: Engine, busybox: str
) -> None:
    dirs = layer_dirs(engine, busybox)
    before = {str(d): tree_digest(d) for d in dirs}
    names = [f"many{i:02d}" for i in range(20)]

    def start(name: str) -> Container:
        return engine.containers.run(busybox, SLEEPER, name=name, detach=True)

    # All at once: 20 callers start, write and read concurrently.
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        containers = list(pool.map(start, names))
        assert [c.status() for c in containers] == ["running"] * 20

        def write(c: Container) -> ExecResult:
            return c.exec(
                ["sh", "-c", f"echo {c.name} > /mine && touch /only-{c.name} && echo x >> /data/base"]
            )

        assert all(r.exit_code == 0 for r in pool.map(write, containers))

        def look(c: Container) -> tuple[bytes, bytes, bytes]:
            return (
                c.exec(["cat", "/mine"]).stdout,
                c.exec(["ls", "/"]).stdout,
                c.exec(["cat", "/data/base"]).stdout,
            )

        seen = list(pool.map(look, containers))
    assert len(engine.containers.list()) == 20
    for c, (mine, listing, base) in zip(containers, seen):
        assert mine == f"{c.name}\n".encode()
        others = [n for n in listing.decode().split() if n.startswith("only-")]
        assert others == [f"only-{c.name}"], f"{c.name} sees {others}"
        assert base == b"base\nx\n", f"{c.name} sees another container's change of an image file"
        # The write went to the container's own writable layer, nowhere else.
        assert (c.dir / "upper" / "mine").read_bytes() == f"{c.name}\n".encode()
    for c in containers:
        c.stop(timeout=5)
        c.remove()
    after = {str(d): tree_digest(d) for d in dirs}
    assert after == before, "running containers changed the image's layer directories"
    assert not any(os.path.exists(d / "fs" / "mine") for d in dirs)
    assert engine.containers.list(all=True) == []


# -- 2. logs -----------------------------------------------------------------------


def test_stdout_and_stderr_are_kept_apart_in_order_with_timestamps(engine: Engine, busybox: str) -> None:
    script = "echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2; sleep 0.1; echo e2 >&2; sleep 0.1; echo o3"
    c = engine.containers.run(busybox, ["sh", "-c", script], detach=True)
    assert c.wait(timeout=30) == 0
    entries = c.log_entries()
    assert all(isinstance(e, LogEntry) for e in entries)
    assert [(e.stream, e.data) for e in entries] == [
        ("stdout", b"o1\n"),
        ("stderr", b"e1\n"),
        ("stdout", b"o2\n"),
        ("stderr", b"e2\n"),
        ("stdout", b"o3\n"),
    ]
    times = [e.time for e in entries]
    assert times == sorted(times) and len(set(times)) == len(times), times
    c.reload()
    assert c.started_at is not None and c.finished_at is not None
    assert c.started_at - 1 <= times[0] and times[-1] <= c.finished_at + 1
    assert c.logs() == b"o1\ne1\no2\ne2\no3\n"
    assert c.logs(stderr=False) == b"o1\no2\no3\n"
    assert c.logs(stdout=False) == b"e1\ne2\n"
    stamped = c.logs(timestamps=True).decode().splitlines()
    assert len(stamped) == 5
    for line, word in zip(stamped, ["o1", "e1", "o2", "e2", "o3"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z " + word, line), line
    c.remove()


def test_logs_tail_and_since(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(
        busybox,
        ["sh", "-c", "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.05; done; echo err >&2"],
        detach=True,
    )
    assert c.wait(timeout=30) == 0
    assert c.logs(tail=2) == b"line6\nerr\n"
    assert c.logs(tail=3, stderr=False) == b"line4\nline5\nline6\n"
    assert c.logs(tail=0) == b""
    assert c.logs(tail=100) == c.logs()
    entries = c.log_entries()
    cut = entries[3].time  # line4
    assert c.logs(since=cut) == b"line4\nline5\nline6\nerr\n"
    assert [e.data for e in c.log_entries(since=cut)] == [b"line4\n", b"line5\n", b"line6\n", b"err\n"]
    assert c.logs(since=time.time() + 60) == b""
    c.remove()


def test_logs_follow_streams_while_running_and_ends_when_it_exits(engine: Engine, busybox: str) -> None:
    n = 20  # one line per 0.1 s: about 2 s of output
    c = engine.containers.run(
        busybox, ["sh", "-c", f"for i in $(seq 1 {n}); do echo tick$i; sleep 0.1; done"], detach=True
    )
    arrivals: list[tuple[float, bytes]] = []
    buffer = b""
    for chunk in c.logs(follow=True, timeout=60):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            arrivals.append((time.time(), line))
    # The iterator ended by itself: the container has exited.
    assert c.status() == "exited"
    assert [line for _, line in arrivals] == [f"tick{i}".encode() for i in range(1, n + 1)]
    assert c.finished_at is not None
    # Streamed, not delivered at the end: the first lines came well before the
    # container finished (it ran about 2 s after them).
    assert arrivals[0][0] < c.finished_at - 1.0, (arrivals[0][0], c.finished_at)
    assert arrivals[4][0] < c.finished_at - 0.5
    c.remove()


def test_logs_follow_tail_and_stream_filter(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(
        busybox, ["sh", "-c", "echo a; echo b; echo x >&2; sleep 0.3; echo c; echo y >&2"], detach=True
    )
    got = b"".join(c.logs(follow=True, stderr=False, timeout=60))
    assert got == b"a\nb\nc\n"
    assert b"".join(c.logs(follow=True, tail=1, timeout=60)) == b"y\n"
    c.remove()


def test_logs_follow_with_a_short_timeout_raises_instead_of_hanging(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sh", "-c", "echo hello; exec sleep 3600"], detach=True)
    got: list[bytes] = []
    t0 = time.monotonic()
    with pytest.raises(TimeoutExpired) as info:
        for chunk in c.logs(follow=True, timeout=1):
            got.append(chunk)
    assert time.monotonic() - t0 < 20  # generous: it must not hang
    assert b"".join(got) == b"hello\n"
    assert info.value.timeout == 1
    assert isinstance(info.value, PylxcoreError)
    assert c.status() == "running"
    c.remove(force=True)


# -- 3. a container outlives the process that started it ----------------------------


def test_container_started_by_another_process_is_found_logged_stopped(engine: Engine, busybox: str) -> None:
    script = textwrap.dedent(
        f"""
        from pylxcore import Engine
        e = Engine(root={str(engine.root)!r})
        c = e.containers.run({busybox!r},
            ["sh", "-c", 'trap "exit 7" TERM; echo up; echo warn >&2; while true; do sleep 0.1; done'],
            detach=True, name="orphan")
        print(c.name, c.state.value)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.split() == [b"orphan", b"running"]

    fresh = Engine(root=engine.root)
    listed = fresh.containers.list()
    assert [c.name for c in listed] == ["orphan"]
    c = listed[0]
    assert c.state is ContainerState.RUNNING and c.image == busybox
    until(lambda: c.logs() == b"up\nwarn\n", what="the orphan's first output")
    assert c.logs(stdout=False) == b"warn\n"
    assert c.stop(timeout=20) == 7
    assert c.state is ContainerState.EXITED and c.exit_code == 7 and c.oom_killed is False

    # A third engine, after the fact: exit code and logs are still there.
    later = Engine(root=engine.root).containers.get("orphan")
    assert (later.state, later.exit_code) == (ContainerState.EXITED, 7)
    assert later.logs() == b"up\nwarn\n"
    assert fresh.containers.list() == [] and [x.name for x in fresh.containers.list(all=True)] == ["orphan"]
    later.remove()


# -- 4. exec ----------------------------------------------------------------------------


def test_exec_stream_yields_output_before_the_command_ends_and_keeps_the_exit_code(
    engine: Engine, busybox: str
) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True)
    stream = c.exec_stream(["sh", "-c", "echo a; sleep 1; echo b >&2; exit 3"])
    got: list[tuple[float, str, bytes]] = []
    for name, chunk in stream:
        got.append((time.monotonic(), name, chunk))
    done = time.monotonic()
    assert [(n, d) for _, n, d in got] == [("stdout", b"a\n"), ("stderr", b"b\n")]
    # "a" came a second before the end, not with it.
    assert got[0][0] < done - 0.5
    assert stream.exit_code == 3
    c.remove(force=True)


def test_exec_options(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True, env={"FROM_RUN": "r"})
    r = c.exec(["sh", "-c", 'echo "$FOO|$FROM_RUN|$HOSTNAME"'], env={"FOO": "bar baz"})
    assert r == ExecResult(0, f"bar baz|r|{c.name}\n".encode(), b"")
    assert c.exec(["pwd"], workdir="/data").stdout == b"/data\n"
    assert c.exec(["pwd"]).stdout == b"/\n"
    assert c.exec(["id", "-u"], user="nobody").stdout == b"65534\n"
    assert c.exec(["id", "-g"], user="nobody").stdout == b"65534\n"
    assert c.exec(["id", "-u"]).stdout == b"0\n"
    assert c.exec(["id", "-u"], user="1234").stdout == b"1234\n"
    assert c.exec(["sh", "-c", "touch /root/x"], user="nobody").exit_code != 0
    with pytest.raises(SpecError):
        c.exec(["true"], user="no-such-user")
    assert c.exec(["cat"], stdin=b"hello\x00world").stdout == b"hello\x00world"
    big = os.urandom(1 << 20)  # more than a pipe holds: must not deadlock
    assert c.exec(["cat"], stdin=big, timeout=60).stdout == big
    assert c.exec(["sh", "-c", "exit 42"]).exit_code == 42
    assert c.exec("echo $((6*7))").stdout == b"42\n"  # a string runs through /bin/sh -c
    r = c.exec(["/no/such/command"])
    assert r.exit_code != 0
    c.remove(force=True)


def test_exec_timeout_kills_the_command_and_the_container_stays_usable(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True)
    t0 = time.monotonic()
    with pytest.raises(TimeoutExpired) as info:
        c.exec(["sh", "-c", "echo started; exec sleep 4242"], timeout=1)
    assert time.monotonic() - t0 < 20
    assert info.value.operation == "exec"
    assert c.status() == "running"
    assert c.exec(["echo", "still here"]) == ExecResult(0, b"still here\n", b"")
    # The timed-out command is gone, not left running in the container.
    until(lambda: b"4242" not in c.exec(["ps"]).stdout, timeout=10, what="the killed exec to go")
    # exec_stream honours the timeout too, mid-stream.
    stream = c.exec_stream(["sh", "-c", "echo one; sleep 30"], timeout=1)
    chunks = []
    with pytest.raises(TimeoutExpired):
        for item in stream:
            chunks.append(item)
    assert chunks == [("stdout", b"one\n")]
    assert c.exec(["true"]).exit_code == 0
    c.remove(force=True)


def test_exec_needs_a_running_container(engine: Engine, busybox: str) -> None:
    c = engine.containers.create(busybox, SLEEPER)
    with pytest.raises(InvalidState) as info:
        c.exec(["true"])
    assert info.value.state == "created"
    c.start()
    assert c.exec(["true"]).exit_code == 0
    c.stop(timeout=5)
    with pytest.raises(InvalidState) as info:
        c.exec(["true"])
    assert info.value.state == "exited"
    c.remove()


# -- 7. lifecycle -------------------------------------------------------------------


def test_create_start_and_run_results(engine: Engine, busybox: str) -> None:
    c = engine.containers.create(busybox, ["sh", "-c", "echo out; echo err >&2; exit 3"], name="made")
    assert c.state is ContainerState.CREATED and c.exit_code is None
    assert engine.containers.list() == [] and [x.name for x in engine.containers.list(all=True)] == ["made"]
    c.start()
    assert c.wait(timeout=30) == 3
    assert (c.state, c.exit_code) == (ContainerState.EXITED, 3)
    assert (c.logs(stderr=False), c.logs(stdout=False)) == (b"out\n", b"err\n")
    # start again: same container, same writable layer; the log grows
    c.start()
    assert c.wait(timeout=30) == 3
    assert c.logs(stderr=False) == b"out\nout\n"
    c.remove()

    result = engine.containers.run(busybox, ["sh", "-c", "echo hi; echo oops >&2; exit 3"])
    assert result == ExecResult(exit_code=3, stdout=b"hi\n", stderr=b"oops\n")
    assert len(engine.containers.list(all=True)) == 1  # kept without remove=True
    engine.containers.list(all=True)[0].remove()

    result = engine.containers.run(busybox, ["sh", "-c", "echo gone"], remove=True)
    assert result == ExecResult(0, b"gone\n", b"")
    assert os.listdir(engine.store.containers_dir) == []

    # detach + remove: the container removes itself when it exits, even one
    # that is gone before run() returns
    for _ in range(5):
        quick = engine.containers.run(busybox, ["true"], detach=True, remove=True)
        assert quick.state in (ContainerState.RUNNING, ContainerState.EXITED)
    until(lambda: os.listdir(engine.store.containers_dir) == [], what="auto-removal of quick ones")
    c = engine.containers.run(busybox, ["sh", "-c", "sleep 0.2"], detach=True, remove=True, name="selfrm")
    until(lambda: not (engine.store.containers_dir / "selfrm").exists(), what="auto-removal")
    with pytest.raises(ContainerNotFound):
        engine.containers.get("selfrm")

    with pytest.raises(TimeoutExpired):
        engine.containers.run(busybox, SLEEPER, timeout=0.5, remove=True)
    assert os.listdir(engine.store.containers_dir) == []


def test_remove_while_an_auto_removed_container_removes_itself(engine: Engine, busybox: str) -> None:
    # Once "exited" is written, remove() waits for the supervisor to exit,
    # which deletes the dir meanwhile: the rename then raised FileNotFoundError.
    def ended(c: Container) -> bool:
        try:
            return c.status() == "exited"
        except ContainerNotFound:
            return True

    for _ in range(10):
        c = engine.containers.run(busybox, ["true"], detach=True, remove=True)
        until(lambda c=c: ended(c), what="its end")
        try:
            c.remove(force=True)
        except ContainerNotFound:
            pass  # (it was gone before remove() looked)
    assert os.listdir(engine.store.containers_dir) == []


def test_a_built_image_object_runs_as_docker_py_runs_an_image(engine: Engine, busybox: str) -> None:
    # docker-py: client.containers.run(client.images.build(...)[0], ...) names the image by its id.
    built = engine.images.get(busybox)
    assert engine.containers.run(built, ["cat", "/data/base"], remove=True).stdout == b"base\n"
    c = engine.containers.create(built, ["false"], name="by-object")
    assert (c.image, c.image_id) == (built.id, built.id)
    with pytest.raises(ContainerError) as err:
        engine.containers.run(built, ["false"], check=True, remove=True)
    assert err.value.image == built.id
    with pytest.raises(TypeError, match="not int"):
        engine.containers.run(42, ["true"])  # type: ignore[arg-type]
    assert [x.name for x in engine.containers.list(all=True)] == ["by-object"]


def test_a_program_that_is_not_there_is_named_before_anything_starts(
    engine: Engine, busybox: str, tmp_path: Path
) -> None:
    # liblxc alone would only say "exit code 255"; Docker says what is missing.
    with pytest.raises(LXCError, match=r"exec: 'nosuchcmd': not found in \$PATH"):
        engine.containers.run(busybox, ["nosuchcmd"], remove=True)
    with pytest.raises(LXCError, match=r"exec: '/opt/app': no such file in the container"):
        engine.containers.run(busybox, ["/opt/app"])
    assert os.listdir(engine.store.containers_dir) == []  # a failed run() leaves nothing
    c = engine.containers.create(busybox, ["./app.sh"], workdir="/srv")
    with pytest.raises(LXCError, match="no such file"):
        c.start()
    assert c.status() == "created"
    c.remove()
    # Found where execvp would find it: along $PATH (the image's, or a custom
    # one), through symlinks, from the workdir, in the writable layer, or
    # under a bind mount that is not there until the container starts.
    assert engine.containers.run(busybox, ["true"], remove=True).exit_code == 0
    assert engine.containers.run(busybox, ["busybox", "true"], remove=True).exit_code == 0
    tool = tmp_path / "tool"
    tool.mkdir()
    (tool / "hello").write_text("#!/bin/sh\necho hi from the mount\n")
    os.chmod(tool / "hello", 0o755)
    result = engine.containers.run(
        busybox, ["hello"], env={"PATH": "/tool:/bin"}, mounts=[Mount(str(tool), "/tool")], remove=True
    )
    assert result.stdout == b"hi from the mount\n"
    made = engine.containers.create(busybox, ["/w.sh"])
    with pytest.raises(LXCError):
        made.start()
    # As if an earlier run of this container had written it: its own layer counts.
    (made.dir / "upper" / "w.sh").write_text("#!/bin/sh\necho made\n")
    os.chmod(made.dir / "upper" / "w.sh", 0o755)
    made.start()
    assert made.wait(timeout=30) == 0 and made.logs() == b"made\n"
    made.remove()


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(
        busybox, ["sh", "-c", 'trap "" TERM; echo ready; while true; do sleep 0.1; done'], detach=True
    )
    until(lambda: c.logs() == b"ready\n", what="ready")
    t0 = time.monotonic()
    code = c.stop(timeout=1.5)
    took = time.monotonic() - t0
    assert code == 137 and c.exit_code == 137
    assert took >= 1.5, took  # it waited for the grace period first
    assert took < 30
    assert c.state is ContainerState.EXITED and not c.oom_killed

    # A process that handles TERM stops at once with its own code.
    c2 = engine.containers.run(
        busybox, ["sh", "-c", 'trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done'], detach=True
    )
    # Its trap must be set before the signal comes (run() returns once the process exists).
    until(lambda: c2.logs() == b"ready\n", what="ready")
    t0 = time.monotonic()
    assert c2.stop(timeout=30) == 0
    assert time.monotonic() - t0 < 15  # did not wait for the whole grace period
    # Default action of SIGTERM: 128+15
    c3 = engine.containers.run(busybox, SLEEPER, detach=True)
    assert c3.stop(timeout=30) == 143
    with pytest.raises(InvalidState) as info:
        c3.stop()
    assert (info.value.state, info.value.operation) == ("exited", "stop")
    for x in (c, c2, c3):
        x.remove()


def test_the_container_ends_with_its_main_process(engine: Engine, busybox: str) -> None:
    # A background child that ignores SIGTERM must not keep the container alive
    # once the main process has exited (liblxc's init alone would wait for it).
    c = engine.containers.run(
        busybox, ["sh", "-c", 'trap "" TERM; sleep 3600 & echo bye; exit 4'], detach=True
    )
    assert c.wait(timeout=30) == 4
    assert c.logs() == b"bye\n"
    c.remove()


def test_kill_delivers_signals_to_the_main_process(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(
        busybox,
        ["sh", "-c", 'trap "echo got-usr1; exit 5" USR1; echo ready; while true; do sleep 0.1; done'],
        detach=True,
    )
    until(lambda: c.logs() == b"ready\n", what="ready")
    c.kill("SIGUSR1")
    assert c.wait(timeout=30) == 5
    assert c.logs() == b"ready\ngot-usr1\n"
    with pytest.raises(InvalidState):
        c.kill("SIGUSR1")

    c2 = engine.containers.run(busybox, SLEEPER, detach=True)
    c2.kill()  # SIGKILL by default
    assert c2.wait(timeout=30) == 137
    c3 = engine.containers.run(busybox, SLEEPER, detach=True)
    c3.kill("HUP")  # names without SIG work too
    assert c3.wait(timeout=30) == 128 + 1
    with pytest.raises(SpecError, match="unknown signal 'SIGNOTHING'"):
        c3.kill("SIGNOTHING")
    for x in (c, c2, c3):
        x.remove()


def test_signal_names_and_numbers_are_parsed_in_one_place() -> None:
    assert signal_number("SIGTERM") == signal_number("term") == signal_number("15") == signal_number(15) == 15
    for bad in ("SIGFOO", "FOO", "SIG_DFL", "", "0", "\u00b2", 0, 999, True):
        with pytest.raises(SpecError, match="signal"):
            signal_number(bad)  # type: ignore[arg-type]


def test_restart_keeps_the_writable_layer(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True)
    assert c.exec(["sh", "-c", "echo kept > /kept && rm /data/base"]).exit_code == 0
    first = c.started_at
    c.restart(timeout=5)
    assert c.state is ContainerState.RUNNING and c.started_at != first
    assert c.exec(["cat", "/kept"]).stdout == b"kept\n"
    assert c.exec(["ls", "/data"]).stdout == b""  # the deletion survives too
    c.stop(timeout=5)
    c.start()
    assert c.exec(["cat", "/kept"]).stdout == b"kept\n"
    c.remove(force=True)
    # a new container from the same image starts from the image again
    with engine.containers.run(busybox, SLEEPER, detach=True) as fresh:
        assert fresh.exec(["cat", "/data/base"]).stdout == b"base\n"
        assert fresh.exec(["cat", "/kept"]).exit_code != 0


def test_freeze_and_unfreeze(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(
        busybox, ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /count; done"], detach=True
    )
    c.freeze()
    assert c.state is ContainerState.FROZEN and c.state.value == "paused" and c.status() == "paused"
    assert [x.name for x in engine.containers.list()] == [c.name]  # paused counts as running
    counter = c.dir / "upper" / "count"
    until(counter.exists, what="the counter file")
    frozen_at = counter.read_bytes()
    time.sleep(0.3)
    assert counter.read_bytes() == frozen_at, "processes kept running while frozen"
    with pytest.raises(InvalidState) as info:
        c.exec(["true"])
    assert info.value.state == "paused"
    with pytest.raises(InvalidState):
        c.freeze()
    c.unfreeze()
    assert c.state is ContainerState.RUNNING
    until(lambda: counter.read_bytes() != frozen_at, what="the counter to move again")
    assert c.exec(["true"]).exit_code == 0
    with pytest.raises(InvalidState):
        c.unfreeze()
    # a frozen container can still be stopped and removed
    c.pause()
    assert c.stop(timeout=5) is not None
    c.remove()


def test_wait(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True)
    t0 = time.monotonic()
    with pytest.raises(TimeoutExpired) as info:
        c.wait(timeout=0.5)
    assert 0.4 <= time.monotonic() - t0 < 20
    assert info.value.timeout == 0.5
    assert c.state is ContainerState.RUNNING
    c.remove(force=True)
    created = engine.containers.create(busybox, ["true"])
    with pytest.raises(InvalidState):
        created.wait(timeout=1)
    created.start()
    assert created.wait(timeout=30) == 0
    assert created.wait(timeout=0) == 0  # already exited: returns at once
    created.remove()


def test_remove_states_names_and_conflicts(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True, name="web1")
    with pytest.raises(InvalidState) as info:
        c.remove()
    err = info.value
    assert (err.name, err.state, err.operation) == ("web1", "running", "remove")
    assert "running" in str(err) and "remove" in str(err)
    assert c.status() == "running"
    with pytest.raises(Conflict) as conflict:
        engine.containers.run(busybox, SLEEPER, detach=True, name="web1")
    assert conflict.value.name == "web1"
    assert c.status() == "running"  # the loser did not disturb the winner
    assert engine.containers.get("web1").id == c.id
    assert engine.containers.get(c.id[:12]).name == "web1"
    c.remove(force=True)
    assert not c.dir.exists()
    for bad in ("web1", "nope", "../containers", "", "a/b", c.id[:12]):
        with pytest.raises(ContainerNotFound):
            engine.containers.get(bad)
    assert not engine.containers.exists("web1")
    with pytest.raises(ContainerNotFound):
        c.reload()
    with pytest.raises(ContainerNotFound):
        c.remove()
    with pytest.raises(SpecError):
        engine.containers.create(busybox, name="../escape")


def test_context_manager_removes_on_exit(engine: Engine, busybox: str) -> None:
    with engine.containers.run(busybox, SLEEPER, detach=True, name="ctx") as c:
        assert c.exec(["true"]).exit_code == 0
    assert not engine.containers.exists("ctx")
    with pytest.raises(RuntimeError):
        with engine.containers.run(busybox, SLEEPER, detach=True, name="ctx2"):
            raise RuntimeError("boom")
    assert not engine.containers.exists("ctx2")
    assert os.listdir(engine.store.containers_dir) == []


def test_lxc_ls_lists_the_container(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True, name="listed")
    out = run(["lxc-ls", "-P", str(engine.store.containers_dir), "--fancy", "-F", "NAME,STATE"])
    assert out.returncode == 0, out.stderr
    assert re.search(r"^listed\s+RUNNING\s*$", out.stdout, re.M), out.stdout
    c.stop(timeout=5)
    out = run(["lxc-ls", "-P", str(engine.store.containers_dir)])
    assert out.stdout.split() == ["listed"]
    c.remove()


def test_mounts(engine: Engine, busybox: str, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "hello.txt").write_text("read me\n")
    rw = tmp_path / "rw"
    rw.mkdir()
    one_file = tmp_path / "single.conf"
    one_file.write_text("k=v\n")
    c = engine.containers.run(
        busybox,
        SLEEPER,
        detach=True,
        mounts=[
            Mount(str(ro), "/ro", read_only=True),
            Mount(str(rw), "/rw"),
            Mount(str(one_file), "/etc/single.conf"),
        ],
    )
    assert c.exec(["cat", "/ro/hello.txt"]).stdout == b"read me\n"
    r = c.exec(["sh", "-c", "echo x > /ro/new"])
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    assert c.exec(["rm", "/ro/hello.txt"]).exit_code != 0
    assert sorted(os.listdir(ro)) == ["hello.txt"]
    assert c.exec(["sh", "-c", "echo written > /rw/out && mkdir /rw/sub"]).exit_code == 0
    assert (rw / "out").read_text() == "written\n" and (rw / "sub").is_dir()
    (rw / "from-host").write_text("host\n")
    assert c.exec(["cat", "/rw/from-host"]).stdout == b"host\n"
    assert c.exec(["cat", "/etc/single.conf"]).stdout == b"k=v\n"
    c.remove(force=True)
    assert (rw / "out").exists() and (ro / "hello.txt").exists()  # removing never touches mounts

    with pytest.raises(SpecError) as info:
        engine.containers.run(busybox, ["true"], mounts=[Mount(str(tmp_path / "missing"), "/m")])
    assert "missing" in str(info.value)
    assert os.listdir(engine.store.containers_dir) == []


# -- 8. cleanup after many cycles ---------------------------------------------------


def test_no_leftovers_after_many_run_remove_cycles(engine: Engine, busybox: str) -> None:
    cycles = int(os.environ.get("PYLXCORE_CYCLES", "200"))
    rid = engine.store.root_id
    mounts_before = Path("/proc/self/mountinfo").read_text().count("\n")
    for i in range(cycles):
        # Each name carries the root id, so that any cgroup made for it
        # (ours, liblxc's lxc.monitor.*, …) is recognisably ours.
        result = engine.containers.run(busybox, ["true"], remove=True, name=f"cy{rid}-{i}")
        assert result.exit_code == 0, (i, result)
    # One detached + auto-removed and one force-removed while running, too.
    engine.containers.run(busybox, ["true"], detach=True, remove=True, name=f"cy{rid}-d")
    until(lambda: os.listdir(engine.store.containers_dir) == [], what="auto-removal")
    engine.close()  # the zygote that forked its supervisor
    # Its supervisor deletes the renamed directory from tmp/ after that, then exits.
    until(
        lambda: our_processes(engine) == [] and os.listdir(engine.store.tmp_dir) == [],
        what="the auto-removing supervisor to finish",
    )
    engine.containers.run(busybox, SLEEPER, detach=True, name=f"cy{rid}-f").remove(force=True)
    engine.close()

    leftover_cgroups = sorted(d for d in cgroup_dirs() if rid in os.path.basename(d))
    assert leftover_cgroups == []
    assert [
        line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(engine.root) in line
    ] == []
    assert Path("/proc/self/mountinfo").read_text().count("\n") <= mounts_before
    assert our_processes(engine) == []
    assert os.listdir(engine.store.containers_dir) == []
    assert os.listdir(engine.store.tmp_dir) == []
    assert engine.containers.list(all=True) == []
    # remove() deletes a container's lock file; prune() those of containers
    # that removed themselves.
    assert [p.name for p in engine.store.locks_dir.glob("ctr-*")] == [f"ctr-cy{rid}-d.lock"]
    engine.prune()
    assert list(engine.store.locks_dir.glob("ctr-*")) == []


# -- 9. notebook reprs and stats ----------------------------------------------------------


def test_reprs_and_stats(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, SLEEPER, detach=True, name="shown", limits=Limits(memory="64M"))
    text = repr(c)
    assert "shown" in text and "running" in text and busybox in text
    page = c._repr_html_()
    assert page.startswith("<table>") and "shown" in page and "running" in page and busybox in page
    assert "memory=64M" in page
    s = c.stats()
    assert isinstance(s, Stats)
    assert s.memory_bytes is not None and s.memory_bytes > 0
    assert s.memory_peak_bytes is not None and s.memory_peak_bytes >= s.memory_bytes
    assert s.memory_limit_bytes == 64 * 1024 * 1024
    assert s.cpu_seconds is not None and s.cpu_seconds >= 0
    assert s.pids == 2  # liblxc's init and sleep
    assert c.exec(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]).exit_code == 0
    s2 = c.stats()
    assert s2.cpu_seconds is not None and s2.cpu_seconds > s.cpu_seconds
    c.stop(timeout=5)
    assert "exited" in repr(c)
    page = c._repr_html_()
    assert "exited" in page and "exit 143" in page
    with pytest.raises(InvalidState):
        c.stats()
    info = c.inspect()
    assert (info["name"], info["state"], info["exit_code"], info["image"]) == (
        "shown",
        "exited",
        143,
        busybox,
    )
    unlimited = engine.containers.run(busybox, SLEEPER, detach=True)
    assert unlimited.stats().memory_limit_bytes is None
    labelled = engine.containers.create(busybox, ["true"], labels={"org.example.team": "web"})
    assert labelled.inspect()["labels"] == {"org.example.team": "web"}
    with pytest.raises(SpecError, match="labels.n: expected a string value"):
        engine.containers.create(busybox, ["true"], labels={"n": 1})  # type: ignore[dict-item]
    labelled.remove()
    hostile = engine.containers.create(busybox, ["true"], name="x.y-z_1")
    assert "<script>" not in hostile._repr_html_()
    for x in (c, unlimited, hostile):
        x.remove(force=True)
