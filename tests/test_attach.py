"""A container's main process on a terminal, and attaching to it (SPEC.md
section 10): ``run -it``, ``create -it`` + ``start -ai``, ``attach``,
``run -i``, and ``Container.attach()``. The CLI is driven through a real pty:
the prompt, ``tty``, TERM, ``stty size`` before and after a resize, Ctrl-C
to the container's process, exit codes, Ctrl-P Ctrl-Q and the terminal's
settings restored (``stty -g`` before and after, in the same terminal)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from pylxcore import Engine
from pylxcore.cli.terminal import DetachKeys, parse_detach_keys
from pylxcore.errors import InvalidState, SpecError
from pylxcore.procs import process_start_time
from pylxcore.supervisor.lxcexec import spawn_on_terminal
from tests.conftest import require_docker
from tests.peers import dockerd


class Terminal:
    """``pylxcore WORDS`` (or ``cli WORDS``) in a shell on a new pty of
    ``rows`` x ``cols``: the shell prints ``stty -g`` before and after it,
    and ``EXIT=`` its code. ``shown`` keeps all the terminal showed."""

    def __init__(
        self, engine: Engine, words: str, rows: int = 33, cols: int = 99, *, cli: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: a shell on the pty
            os.environ.update(env or {}, PYLXCORE_ROOT=str(engine.root), TERM="vt220")
            cli = cli or f"{sys.executable} -m pylxcore"
            os.execv("/bin/sh", ["sh", "-c", f"stty -g; {cli} {words}; echo EXIT=$?; stty -g"])
        self.pid, self.fd = pid, fd
        self.resize(rows, cols)
        self.shown = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read(self, until: bytes, timeout: float = 20) -> bytes:
        """What the terminal shows until ``until`` appears (or it closes, or time runs out)."""
        out = b""
        end = time.monotonic() + timeout
        while until not in out and time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: closed
                    break
                if not chunk:
                    break
                out += chunk
        self.shown += out
        return out

    def finish(self) -> tuple[int, bool]:
        """Read to the end: (the command's exit code, whether the terminal's
        settings were the same after it as before)."""
        self.read(b"\0", timeout=20)  # (never comes: to the end)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        settings = [ln for ln in self.shown.decode(errors="replace").splitlines() if ln.count(":") > 30]
        code = int(self.shown.split(b"EXIT=")[1].split()[0])
        return code, len(settings) == 2 and settings[0] == settings[1]


def test_run_it_then_detach_and_attach_again(engine: Engine, busybox: str) -> None:
    t = Terminal(engine, f"run -it --name sh1 {busybox} sh")
    assert b"# " in t.read(b"# ")
    t.type(b"tty; echo T=$TERM; stty size; X=kept\r")
    shown = t.read(b"33 99")
    assert b"/dev/pts/" in shown and b"T=vt220" in shown and b"33 99" in shown, shown
    # The caller's window changes (the kernel tells the CLI with SIGWINCH): so does the container's.
    t.resize(50, 140)
    time.sleep(0.5)
    t.type(b"stty size; sleep 60\r")
    assert b"50 140" in t.read(b"50 140")
    time.sleep(0.5)
    t.type(b"\x03")  # raw: Ctrl-C goes to the container's foreground job, not to the CLI
    after = t.read(b"# ", timeout=10)
    assert b"^C" in after and b"# " in after.split(b"^C")[-1]  # the sleep ended: a prompt
    t.type(b"\x10\x11")  # Ctrl-P Ctrl-Q: leave it running
    assert t.finish() == (0, True)
    c = engine.containers.get("sh1")
    assert c.status() == "running"
    # Back to the same shell (its variable is still set), from another terminal.
    t = Terminal(engine, "attach sh1", rows=20, cols=70)
    t.read(b"\n")  # (stty -g)
    time.sleep(0.5)
    t.type(b"echo X=$X; stty size\r")
    shown = t.read(b"20 70")
    assert b"X=kept" in shown and b"20 70" in shown, shown
    t.type(b"exit 5\r")
    assert t.finish() == (5, True)
    assert c.wait(timeout=10) == 5
    assert b"X=kept" in c.logs()  # the log keeps what the terminal showed


def test_ctrl_c_reaches_a_trapping_process_and_start_ai(engine: Engine, busybox: str) -> None:
    script = "stty size; trap 'echo trapped; exit 7' INT; echo ready; sleep 60 & wait"
    t = Terminal(engine, f"run -it --rm --name trap {busybox} sh -c \"{script}\"")
    assert b"33 99\r\nready" in t.read(b"ready")  # our size from the start, as docker run -it
    time.sleep(0.3)
    t.type(b"\x03")
    assert b"trapped" in t.read(b"trapped", timeout=10)
    assert t.finish() == (7, True)
    assert not engine.containers.exists("trap")  # --rm: its supervisor removed it
    # create -it, then start -ai: the same terminal.
    subprocess.run(
        [sys.executable, "-m", "pylxcore", "--root", str(engine.root), "create", "-it", "--name", "later",
         busybox, "sh"],
        check=True, capture_output=True,
    )  # fmt: skip
    t = Terminal(engine, "start -ai later")
    assert b"# " in t.read(b"# ")
    t.type(b"stty size; exit 3\r")
    assert b"33 99" in t.read(b"33 99")
    assert t.finish() == (3, True)


def test_run_i_streams_stdin_as_it_comes(engine: Engine, busybox: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylxcore", "--root", str(engine.root), "run", "-i", "--rm", busybox,
         "sh", "-c", "read x; echo got $x; read y; echo got $y >&2; exit 2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        # The answer to the first line comes while our input is still open.
        assert select.select([proc.stdout], [], [], 20)[0]
        assert proc.stdout.readline() == b"got one\n"
        proc.stdin.write(b"two\n")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 2
        assert proc.stderr.read() == b"got two\n"
    finally:
        proc.kill()
        proc.wait()
    # Much more than any buffer on the way, both ways at once: nothing lost, nothing stuck.
    data = os.urandom(3 << 20)
    r = subprocess.run(
        [sys.executable, "-m", "pylxcore", "--root", str(engine.root), "run", "-i", "--rm", busybox, "cat"],
        input=data, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout == data


def test_start_a_and_attach_without_a_terminal(engine: Engine, busybox: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "pylxcore", "--root", str(engine.root), *args],
                              capture_output=True, timeout=60, check=False)  # fmt: skip

    script = "echo out; echo err >&2; exit 6"
    assert cli("create", "--name", "plain", busybox, "sh", "-c", script).returncode == 0
    r = cli("start", "-a", "plain")  # its output from its start, its exit code
    assert (r.returncode, r.stdout, r.stderr) == (6, b"out\n", b"err\n")
    c = engine.containers.run(busybox, ["sh", "-c", "echo old; sleep 1; echo new; exit 2"], detach=True)
    time.sleep(0.3)
    r = cli("attach", c.name)  # made without -i or -t: what it writes from now on, until it exits
    assert (r.returncode, r.stdout) == (2, b"new\n")


def test_attach_from_the_library(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sh"], detach=True, tty=True, stdin=True, env={"TERM": "vt100"})
    with c.attach() as s:
        s.resize(40, 120)
        assert b"# " in s.read_until(b"# ")
        s.write(b"echo $TERM; stty size\r")
        assert b"vt100\r\n40 120\r\n" in s.read_until(b"40 120\r\n")
    assert c.status() == "running"  # leaving the stream left it running
    one, two = c.attach(), c.attach()  # two at once: both see it, either may type
    one.write(b"echo both\r")
    assert b"both\r\n" in one.read_until(b"both\r\n") and b"both\r\n" in two.read_until(b"both\r\n")
    two.write(b"exit 4\r")
    assert one.wait() == 4 and two.wait() == 4 and c.wait(timeout=10) == 4
    with pytest.raises(InvalidState, match="it is exited"):
        c.attach()
    # A run so short that it ends before the caller comes: its output and code still reach it.
    c = engine.containers.run(busybox, ["echo", "hi"], detach=True, tty=True, remove=True)
    time.sleep(0.2)
    s = c.attach()
    assert list(s) == [("stdout", b"hi\r\n")] and s.exit_code == 0
    # What came before the caller: all of it, when it comes in time (the output waits for it).
    c = engine.containers.run(busybox, ["head", "-c", "3000000", "/dev/zero"], detach=True, stdin=True)
    time.sleep(0.3)
    s = c.attach()
    assert sum(len(chunk) for _, chunk in s) == 3000000 and s.exit_code == 0
    # stdin without a terminal: a pipe, input as it comes, stdout and stderr apart.
    c = engine.containers.run(busybox, ["sh", "-c", "read x; echo $x; cat >&2"], detach=True, stdin=True)
    s = c.attach()
    s.write(b"first\n")
    assert s.read(timeout=10) == b"first\n"
    s.write(b"second")
    s.close_stdin()
    assert list(s) == [("stderr", b"second")] and s.exit_code == 0
    assert c.logs(stdout=False) == b"second"
    c = engine.containers.run(busybox, ["sleep", "60"], detach=True)
    with pytest.raises(InvalidState, match="without tty or stdin"):
        c.attach()
    with pytest.raises(TypeError):
        engine.containers.create(busybox, tty="yes")  # type: ignore[arg-type]


def test_the_host_pty_carries_the_container_s_terminal_bytes_as_they_are() -> None:
    # lxc-execute turns output processing on for the terminal it is given (as
    # this child does), then relays what the container's terminal wrote: "\r\n"
    # already. The supervisor's pty must pass that on as it is, from the first byte.
    liblxc = (
        "import os, termios; mode = termios.tcgetattr(0); mode[1] |= termios.OPOST | termios.ONLCR;"
        " termios.tcsetattr(0, termios.TCSAFLUSH, mode); os.write(1, b'hi\\r\\n')"
    )
    run = spawn_on_terminal([sys.executable, "-c", liblxc], {}, (24, 80))
    assert not isinstance(run, str)
    out = b""
    while True:
        try:
            chunk = os.read(run.out_r, 4096)
        except OSError:  # EIO: the other end has closed
            break
        if not chunk:
            break
        out += chunk
    os.close(run.out_r)
    assert run.proc.wait() == 0
    assert out == b"hi\r\n"


def test_wait_and_remove_do_not_wait_for_a_caller_who_will_not_come(engine: Engine, busybox: str) -> None:
    # A short run's supervisor outlives it by up to two seconds, for a caller
    # that attaches late (see test_attach_from_the_library). wait() returns at
    # the run's end all the same, and remove() tells it that no one is coming.
    c = engine.containers.run(busybox, ["echo", "hi"], detach=True, tty=True)
    assert c.wait(timeout=10) == 0
    shim = int(json.loads((c.dir / "state.json").read_text())["shim_pid"])
    start = process_start_time(shim)
    assert start is not None  # (still waiting for the caller)
    assert c.logs() == b"hi\r\n"
    began = time.monotonic()
    c.remove()
    assert time.monotonic() - began < 1.5  # (not the rest of the two seconds)
    assert process_start_time(shim) != start  # (gone, or only a zombie)
    assert engine.containers.run(busybox, ["echo", "hi"], tty=True, remove=True).stdout == b"hi\r\n"


def test_detach_keys() -> None:
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-]") == b"\x00\x1d"
    with pytest.raises(SpecError):
        parse_detach_keys("ctrl-ab")
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab\x10") == (b"ab", False)  # Ctrl-P held back…
    assert keys.feed(b"c") == (b"\x10c", False)  # …and passed on when no Ctrl-Q follows
    assert keys.feed(b"\x10\x10") == (b"\x10", False)
    assert keys.feed(b"\x11rest") == (b"", True)


# (docker's console is not always ready at once: a moment first, for its sake)
SCENE = "sleep 0.5; tty; stty size; trap 'echo trapped; exit 7' INT; echo ready; sleep 60 & wait"


def _scene(t: Terminal) -> tuple[list[str], int]:
    """Ctrl-C to a trapping shell on ``t``: (what it showed, its exit code)."""
    assert b"ready" in t.read(b"ready")
    time.sleep(0.5)
    t.type(b"\x03")
    t.read(b"trapped", timeout=10)
    code, restored = t.finish()
    assert restored
    lines = [ln.strip() for ln in t.shown.decode(errors="replace").splitlines()]
    return [ln for ln in lines if ln and ln.count(":") < 30 and not ln.startswith("EXIT=")], code


@pytest.mark.slow
def test_run_it_shows_what_docker_run_it_shows(engine: Engine, busybox: str, tmp_path: Path) -> None:
    """The same scene on a terminal, through ``docker run -it`` (Docker 20.10) and ours."""
    require_docker()
    base = engine.store.layer_dir(engine.images.record(busybox).layers[0]) / "fs"
    with dockerd(tmp_path / "docker") as peer:
        peer.load_rootfs(base, "pxtest/busybox")
        theirs = _scene(Terminal(
            engine, f"run -it --rm --network none pxtest/busybox sh -c \"{SCENE}\"", cli=peer.docker,
            env=peer.env,
        ))  # fmt: skip
    ours = _scene(Terminal(engine, f"run -it --rm {busybox} sh -c \"{SCENE}\""))
    assert ours == theirs == (["/dev/pts/0", "33 99", "ready", "^Ctrapped"], 7), (ours, theirs)
