"""Our terminal made a container's: ``exec -i``/``-t`` (our stdin streamed
to the command, our terminal its: raw, its size followed, Ctrl-C delivered),
and the same for a container's main process through its supervisor's attach
socket: ``run -i``/``-t``, ``start -a``, ``attach`` (with the detach keys,
Ctrl-P Ctrl-Q, to leave it running)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from pylxcore.cli.output import write_bytes

if TYPE_CHECKING:
    from pylxcore.runtime.exec import ExecStream


def _feed(stream: ExecStream, fd: int) -> None:
    """Copy what comes on ``fd`` to the command's input until either ends."""
    try:
        while data := os.read(fd, 65536):
            stream.write(data)
    except Exception:  # noqa: BLE001  (the command has ended: nothing to say)
        return
    stream.close_stdin()


def _give(stream: ExecStream, data: bytes) -> None:
    """Send ``data`` to the command, then end its input."""
    try:
        stream.write(data)
    except Exception:  # noqa: BLE001  (the command has ended: nothing to say)
        return
    stream.close_stdin()


def relay(stream: ExecStream, *, interactive: bool, tty: bool) -> int:
    """Show the command's output as it comes; with ``interactive``, send it
    our stdin as it comes; with ``tty`` and a terminal as our stdin, put that
    terminal in raw mode (every key, Ctrl-C too, goes to the command) and
    keep the command's terminal as big as ours. The command's exit code."""
    try:
        stdin: int | None = sys.stdin.fileno()
    except (OSError, ValueError):  # (io.UnsupportedOperation is both): no descriptor, as in a test
        stdin = None
    saved: Any = None
    previous: Any = None
    if tty and stdin is not None and os.isatty(stdin):
        import termios  # (only a terminal needs these)
        import tty as ttys

        def follow_size(*_: object) -> None:
            assert stdin is not None
            try:
                size = os.get_terminal_size(stdin)
                stream.resize(size.lines, size.columns)
            except OSError:
                pass

        saved = termios.tcgetattr(stdin)
        follow_size()
        previous = signal.signal(signal.SIGWINCH, follow_size)
        if interactive:
            ttys.setraw(stdin)
    try:
        if interactive and stdin is not None:
            threading.Thread(target=_feed, args=(stream, stdin), daemon=True).start()
        elif interactive:  # a stream without a descriptor (a test's): all of it, then its end
            data = sys.stdin.buffer.read()
            threading.Thread(target=_give, args=(stream, data), daemon=True).start()
        for name, chunk in stream:
            write_bytes(sys.stdout if name == "stdout" else sys.stderr, chunk)
    except KeyboardInterrupt:
        try:
            os.kill(stream.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stream.wait()
        raise
    finally:
        if saved is not None and stdin is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous)
    return stream.wait()


# -- attaching: run -i/-t, start -a, attach ------------------------------------

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL_KEYS = "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"  # ctrl-X is X's code less 0x40


def parse_detach_keys(text: str | None) -> bytes:
    """Docker's ``--detach-keys``: comma-separated keys, each a character or
    ``ctrl-X`` (X a letter or one of ``@[\\]^_``); None or "": Ctrl-P Ctrl-Q.
    Raises SpecError for a key that is neither."""
    from pylxcore.errors import SpecError

    keys = bytearray()
    for key in (text or DEFAULT_DETACH_KEYS).split(","):
        if len(key) == 1 and key.isascii():
            keys.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6 and key[5].upper() in _CTRL_KEYS:
            keys.append(ord(key[5].upper()) - 0x40)
        else:
            raise SpecError(f"bad detach key {key!r}: expected a character or ctrl-X", key="detach-keys")
    return bytes(keys)


class DetachKeys:
    """Finds the detach keys in what is typed: ``feed`` returns what to pass
    on and whether they were typed. A key that could begin them is held back
    until the next tells (as Docker does), then passed on."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if not self.keys or (not self.held and self.keys[0] not in data):
            return data, False  # (most of the time: no byte to look at one by one)
        out = bytearray()
        for byte in data:
            self.held += bytes([byte])
            while self.held and not self.keys.startswith(self.held):
                out += self.held[:1]  # not the keys: the first goes on, the rest may begin them
                self.held = self.held[1:]
            if self.held == self.keys:
                self.held = b""
                return bytes(out), True
        return bytes(out), False


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError):  # no descriptor, as in a test
        return None


def relay_attached(
    container: Any, stream: Any, *, interactive: bool, detach_keys: bytes
) -> tuple[int | None, bool]:
    """Show what ``stream`` (an AttachStream on ``container``) brings as it
    comes; with ``interactive``, send it our stdin as it comes, the detach
    keys excepted. On a terminal, with ``stream.tty``, ours is raw (every
    key, Ctrl-C too, goes to the container) and its size is followed. A
    Ctrl-C that does reach us (no raw terminal) is sent on as SIGINT. (The
    run's exit code, None when it did not come; whether we detached: the keys.)"""
    from pylxcore.errors import InvalidState, PylxcoreError

    stdin = _stdin_fd() if interactive else None
    on_terminal = stdin is not None and os.isatty(stdin)
    saved: Any = None
    previous: Any = None
    keys = DetachKeys(detach_keys if stream.tty else b"")  # (as Docker: keys on a terminal only)
    if stream.tty:
        size_fd = stdin if on_terminal else (1 if os.isatty(1) else None)

        def follow_size(*_: object) -> None:
            try:
                size = os.get_terminal_size(size_fd)  # type: ignore[arg-type]
                stream.resize(size.lines, size.columns)
            except (OSError, InvalidState):
                pass

        if size_fd is not None:
            follow_size()
            previous = signal.signal(signal.SIGWINCH, follow_size)
    if stream.tty and on_terminal:
        import termios
        import tty as ttys

        assert stdin is not None
        saved = termios.tcgetattr(stdin)
        ttys.setraw(stdin, termios.TCSANOW)
    detached = threading.Event()
    if stdin is not None:
        # A thread of its own: our writes may have to wait for the container
        # to read, and meanwhile its output must still be read.
        threading.Thread(target=_send_input, args=(stream, stdin, keys, detached), daemon=True).start()
    try:
        while not stream.ended:
            try:
                got = stream.next_chunk()
                if got and got[0]:
                    write_bytes(sys.stdout if got[0] == "stdout" else sys.stderr, got[1])
            except KeyboardInterrupt:  # (no raw terminal: the kernel made it a signal)
                try:
                    container.kill("SIGINT")  # (docker's sig-proxy)
                except PylxcoreError:
                    pass
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)  # type: ignore[arg-type]
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
    return (None, True) if detached.is_set() else (stream.exit_code, False)


def _send_input(stream: Any, stdin: int, keys: DetachKeys, detached: threading.Event) -> None:
    """Send what comes on ``stdin`` to ``stream`` until either ends, or the
    detach keys come (then ``detached`` is set and the stream let go). A thread."""
    try:
        while data := os.read(stdin, 65536):
            data, hit = keys.feed(data)
            if data:
                stream.write(data)
            if hit:
                detached.set()
                stream.detach()
                return
        stream.close_stdin()
    except Exception:  # noqa: BLE001  (the run has ended, or we left: nothing to say)
        return


def attach_container(
    container: Any, *, interactive: bool, detach_keys: str | None, started: bool = False
) -> int:
    """Attach our terminal (or stdin and stdout) to ``container``, which
    runs; our exit code: the container's when its run ended, 0 when we
    detached. A container created without tty and stdin: its output
    followed until it exits (from its start when we ``started`` it, else
    from now on). Raises what the library raises."""
    from pylxcore.cli.attach import follow_logs
    from pylxcore.cli.output import EXIT_ERROR, EXIT_OK
    from pylxcore.errors import ContainerNotFound, InvalidState

    keys = parse_detach_keys(detach_keys)
    facts = container.inspect()
    try:
        if not facts["tty"] and not facts["open_stdin"]:
            follow_logs(container, since=facts["started_at"]) if started else follow_logs(container, tail=0)
        else:
            try:
                stream = container.attach()
            except InvalidState:
                follow_logs(container, since=facts["started_at"])  # it ended before we came: its log has it
            else:
                code, detached = relay_attached(container, stream, interactive=interactive, detach_keys=keys)
                if detached:
                    return EXIT_OK
                if code is not None:
                    return code
        code = container.wait()  # (the end came without its code: the supervisor's record has it)
    except ContainerNotFound:
        code = None  # removed meanwhile (--rm)
    if code is None:
        print(f"pylxcore: error: the exit code of container {container.name!r} was lost", file=sys.stderr)
        return EXIT_ERROR
    return int(code)


def wait_removed(container: Any, timeout: float = 30) -> None:
    """Wait until ``container``, which its supervisor removes once it has
    exited (``run --rm``), is gone, as ``docker run --rm`` does; at once when
    it runs on (we detached). Raises nothing."""
    import time

    from pylxcore.errors import ContainerNotFound

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if container.status() != "exited":
                return
        except ContainerNotFound:
            return
        time.sleep(0.01)


def cmd_attach(args: Any) -> int:
    """``attach NAME``: our terminal (or stdin and stdout) to a running
    container's main process, until it exits or we detach (the detach keys)."""
    from pylxcore.engine import Engine

    container = Engine(root=args.root).containers.get(args.name)
    return attach_container(container, interactive=not args.no_stdin, detach_keys=args.detach_keys)
