"""Commands on a terminal (SPEC.md section 10): ``exec(tty=True)`` runs on a
pty of the container's own devpts; ``exec_stream(stdin=True)`` streams
input; ``pylxcore exec -it`` makes the caller's terminal the command's (raw,
its size followed on resize, Ctrl-C delivered, the exit code passed back),
tested through a real pty."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from pylxcore import Engine
from pylxcore.runtime.exec import container_pty


def test_exec_on_a_terminal_of_the_container_s_own(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, detach=True)
    r = c.exec(["sh", "-c", "tty; echo $TERM; stty size; echo err >&2"], tty=True)
    lines = r.stdout.decode().splitlines()
    assert r.exit_code == 0 and r.stderr == b""  # one terminal: everything in stdout
    assert lines[0].startswith("/dev/pts/") and lines[1:] == ["xterm", "24 80", "err"]
    assert c.exec(["tty"]).stdout == b"not a tty\n"  # (no terminal unless asked)
    # Input as it comes, then its end.
    s = c.exec_stream(["cat"], stdin=True)
    s.write(b"one ")
    s.write(b"two")
    s.close_stdin()
    assert list(s) == [("stdout", b"one two")] and s.exit_code == 0
    # A shell on a terminal: its size set, Ctrl-C to its foreground job, its exit code.
    s = c.exec_stream(["sh"], tty=True, stdin=True, env={"TERM": "vt100"})
    s.resize(30, 100)
    s.write(b"echo $TERM; stty size; sleep 30\n")
    time.sleep(1)
    began = time.monotonic()
    s.write(b"\x03")
    s.write(b"exit 5\n")
    out = b"".join(chunk for _, chunk in s)
    assert time.monotonic() - began < 10  # the sleep was interrupted
    assert b"vt100\r\n30 100\r\n" in out and b"^C" in out
    assert s.exit_code == 5


def test_a_terminal_is_opened_only_through_the_container_s_own_dirs(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "pts").symlink_to("/dev/pts")  # the host's, by a symlink: refused
    with pytest.raises(OSError):
        container_pty(str(tmp_path))
    (tmp_path / "dev" / "pts").unlink()
    (tmp_path / "dev" / "pts").mkdir()
    (tmp_path / "dev" / "pts" / "ptmx").write_text("")  # not a pty multiplexer: refused
    with pytest.raises(OSError, match="not a pty multiplexer"):
        container_pty(str(tmp_path))
    (tmp_path / "dev" / "pts" / "ptmx").unlink()
    (tmp_path / "dev" / "pts" / "ptmx").symlink_to("/dev/ptmx")
    with pytest.raises(OSError):
        container_pty(str(tmp_path))


def _read(fd: int, until: bytes, timeout: float = 20) -> bytes:
    """What the terminal shows until ``until`` appears (or it closes)."""
    out = b""
    end = time.monotonic() + timeout
    while until not in out and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: closed
                break
            if not chunk:
                break
            out += chunk
    return out


def test_exec_it_through_a_real_terminal(engine: Engine, busybox: str) -> None:
    engine.containers.run(busybox, detach=True, name="term")
    pid, fd = pty.fork()
    if pid == 0:  # the child: `pylxcore exec -it term sh` on the pty
        os.environ.update(PYLXCORE_ROOT=str(engine.root), TERM="vt220")
        os.execv(sys.executable, [sys.executable, "-m", "pylxcore", "exec", "-it", "term", "sh"])
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
        assert b"# " in _read(fd, b"# ")
        os.write(fd, b"tty; echo T=$TERM; stty size\r")
        shown = _read(fd, b"33 99")
        assert b"/dev/pts/" in shown and b"T=vt220" in shown and b"33 99" in shown
        # The caller's window changes (the kernel tells the command with SIGWINCH): so does the command's.
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
        time.sleep(0.5)
        os.write(fd, b"stty size; sleep 60\r")
        assert b"50 140" in _read(fd, b"50 140")
        time.sleep(0.5)
        os.write(fd, b"\x03")  # raw mode: Ctrl-C goes to the container's foreground job
        after = _read(fd, b"# ", timeout=10)
        assert b"^C" in after and b"# " in after.split(b"^C")[-1]  # the sleep ended: a prompt
        os.write(fd, b"exit 9\r")
        _read(fd, b"\0", timeout=10)  # to its end
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 9
