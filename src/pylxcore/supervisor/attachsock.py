"""A container's attach socket (SPEC.md section 10): how callers reach the
main process's input and output through its supervisor, which outlives them.

For a container created with ``tty`` or ``stdin``, the supervisor listens
on ``attach.sock`` in the container's dir (0600, root's; the dir is 0700
too). A caller connects (SOCK_SEQPACKET: each message arrives whole, so
there is no framing to parse) and exchanges messages of one kind byte and
its payload:

    caller -> supervisor   IN data      typed into the terminal, or into the stdin pipe
                           END          the input ends: the pipe is closed (Ctrl-D on a terminal)
                           RESIZE b"ROWS COLS"  the terminal's size (the process gets SIGWINCH)
    supervisor -> caller   OUT data     the terminal's output, or stdout without one
                           ERR data     stderr (without a terminal)
                           EXIT b"CODE" the run has ended with CODE; the supervisor then hangs up

Several callers may attach at once: each gets the output from when it came,
and what any of them sends goes in. The run's first caller also gets what
came before it, when it comes within EARLY_FOR seconds of the start (what
``run -it`` would otherwise miss between the start and its attach: the
prompt, or all of a short run): meanwhile up to EARLY_MAX bytes are kept,
and past that the output waits until a caller comes or the time is up. A
caller leaves by closing its end; the container runs on.

The supervisor never blocks on a caller, nor on the process: output a
caller has not taken yet, and input the process has not, wait in queues.
Past a caller's HIGH bytes the output is not read (the process blocks as it
would on a slow terminal), past QUEUE_MAX bytes of input the callers are not
read (their writes block), and a caller that takes nothing for STUCK seconds
meanwhile is hung up on (see Attachments).

A socket's path holds 107 bytes at most and a store root may lie deeper, so
both sides name it through ``/proc/self/fd/DIRFD/attach.sock`` (see socket_path).

The terminal itself is a pty of the host's whose other end is lxc-execute's
controlling terminal: liblxc then gives the main process a terminal of the
container's own devpts (/dev/pts/N in the container, its controlling
terminal) and relays between the two, window size included.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import termios
import time

ATTACH_SOCK = "attach.sock"
IN, END, RESIZE = b"i", b"e", b"r"
OUT, ERR, EXIT = b"o", b"E", b"x"
CHUNK = 65536  # the most a message carries (a read of the terminal or a pipe)
EARLY_MAX = 1 << 20
EARLY_FOR = 2.0  # seconds after a start that what comes is kept for the first caller
QUEUE_MAX = 1 << 20


def socket_path(dir_fd: int) -> str:
    """The attach socket's path through ``dir_fd``, a descriptor of the
    container's dir (any length of the dir's own path fits). Raises nothing."""
    return f"/proc/self/fd/{dir_fd}/{ATTACH_SOCK}"


def set_size(fd: int, rows: int, cols: int) -> None:
    """Set the size of the terminal whose master is ``fd``. Raises OSError."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def make_raw(fd: int) -> None:
    """Put the terminal of ``fd`` (a pty's master: its other end's) in raw
    mode, as cfmakeraw does, with its output processing locked off: the
    host's pty only carries the bytes of the container's terminal, which
    does the line discipline. The lock (TIOCSLCKTRMIOS, root's) is because
    liblxc turns output processing on (OPOST, ONLCR: lxc_setup_tios) when it
    takes the terminal over, and then relays output that the container's
    terminal has already processed: "\n" would arrive as "\r\r\n". Set
    after liblxc's setup instead, it came too late for a short run's first
    line now and then. Raises OSError (not a terminal)."""
    mode = termios.tcgetattr(fd)
    mode[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                 | termios.IGNCR | termios.ICRNL | termios.IXON)  # fmt: skip
    mode[1] &= ~termios.OPOST
    mode[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    # The kernel's struct termios (4 flag words, c_line, 19 c_cc): a bit set
    # here keeps the value the terminal has now. (Without CAP_SYS_ADMIN, the
    # terminal works all the same, with that rare "\r\r\n".)
    try:
        fcntl.ioctl(fd, termios.TIOCSLCKTRMIOS, struct.pack("=4IB19s", 0, termios.OPOST, 0, 0, 0, bytes(19)))
    except PermissionError:
        pass


class _Caller:
    __slots__ = ("progress", "queue", "queued", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queue: list[bytes] = []  # messages it has not taken yet
        self.queued = 0
        self.progress = 0.0  # when it last took a message (time.monotonic())


class Attachments:
    """The attach socket of a container at ``ctrdir`` and its callers (see
    the module's docstring). Per run: ``start_run`` with the process's
    input and output descriptors, ``output`` for what it writes,
    ``output_closed`` when one ends, ``end_run`` with its exit code. In the
    supervisor's poll: ``register``, ``on_event`` for the descriptors it
    ``owns``, and ``tick`` after each poll (every 100 ms at least while ``paused``).

    Flow control, as a terminal's: while a caller has more than HIGH bytes
    of output queued, the output is not read (the process blocks when it
    writes more), and while input waits beyond QUEUE_MAX, the callers'
    messages are not read (a caller's writes block). A caller that takes
    nothing for STUCK seconds meanwhile is hung up on: one stuck caller must
    not hold the container up for good. Raises OSError when it cannot listen."""

    HIGH = 256 * 1024
    STUCK = 10.0

    def __init__(self, ctrdir: str, tty: bool) -> None:
        self.tty = tty
        self.path = os.path.join(ctrdir, ATTACH_SOCK)
        dir_fd = os.open(ctrdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            path = socket_path(dir_fd)
            try:
                os.unlink(path)  # a killed supervisor's
            except FileNotFoundError:
                pass
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            self.listener.setblocking(False)
            umask = os.umask(0o177)  # 0600 from the start, not after a chmod
            try:
                self.listener.bind(path)
            finally:
                os.umask(umask)
            self.listener.listen(16)
        finally:
            os.close(dir_fd)
        self.listen_fd = self.listener.fileno()
        self.callers: dict[int, _Caller] = {}
        self.poller: select.poll | None = None
        self.watching: dict[int, int] = {}  # what is registered in the poller, and for which events
        self.outputs: list[int] = []  # the process's output, read by the supervisor
        self.paused = False  # its output not read: a caller is behind
        self.input = -1  # the terminal's master, or the stdin pipe's end; -1: none
        self.pending = bytearray()  # input the process has not taken yet
        self.closing = False  # END came while input was pending: close once it is taken
        self.early: list[bytes] | None = None  # output before the run's first caller
        self.early_size = 0
        self.early_until = 0.0

    def owns(self, fd: int) -> bool:
        """Whether events on ``fd`` are this one's (but the output's, which the supervisor reads)."""
        return fd == self.listen_fd or fd in self.callers or (fd == self.input and not self.tty)

    def register(self, poller: select.poll) -> None:
        """Watch the socket and the callers in ``poller``, the run's (before start_run)."""
        self.poller = poller
        self.watching = {}
        self._sync()

    def start_run(self, input_fd: int, outputs: list[int]) -> None:
        """A run begins whose input is ``input_fd`` (the terminal's master,
        owned by the supervisor; or the stdin pipe's end, owned from now on
        by this one; -1: none) and whose output the supervisor reads from
        ``outputs``, registered in the poll for POLLIN."""
        self.input = input_fd
        if input_fd >= 0:
            os.set_blocking(input_fd, False)
        self.outputs = list(outputs)
        self.watching.update((fd, select.POLLIN) for fd in outputs)
        self.paused = False
        self.pending.clear()
        self.closing = False
        self.early, self.early_size = [], 0
        self.early_until = time.monotonic() + EARLY_FOR
        self._sync()

    def output_closed(self, fd: int) -> None:
        """The supervisor has unregistered and closed output ``fd`` (its end)."""
        self.outputs.remove(fd)
        self.watching.pop(fd, None)
        if fd == self.input:
            self.input = -1
            self.pending.clear()

    def _sync(self) -> None:
        """Register what should be watched now, and for what (see the class's docstring)."""
        if self.poller is None:
            return
        want = {self.listen_fd: select.POLLIN}
        for fd, caller in self.callers.items():
            want[fd] = (select.POLLIN if len(self.pending) < QUEUE_MAX else 0) | (
                select.POLLOUT if caller.queue else 0
            )
        if not self.paused:
            want.update((fd, select.POLLIN) for fd in self.outputs)
        if self.pending and self.input >= 0 and (not self.tty or not self.paused):
            want[self.input] = want.get(self.input, 0) | select.POLLOUT
        for fd in [fd for fd in self.watching if fd not in want]:
            self.poller.unregister(fd)
            del self.watching[fd]
        for fd, events in want.items():
            if fd not in self.watching:
                self.poller.register(fd, events)
            elif self.watching[fd] != events:
                self.poller.modify(fd, events)
            self.watching[fd] = events

    def tick(self) -> None:
        """After each poll: hang up on callers stuck too long, resume the
        output once none is behind (and no first caller is waited for)."""
        if self.paused:
            now = time.monotonic()
            for fd, caller in list(self.callers.items()):
                if caller.queued > self.HIGH and now - caller.progress > self.STUCK:
                    self._drop(fd)
            if self.early is not None and now > self.early_until:
                self.early = None  # nobody came in time: the log has it all
            self._flow()

    def _flow(self) -> None:
        behind = any(caller.queued > self.HIGH for caller in self.callers.values()) or (
            self.early is not None and self.early_size >= EARLY_MAX
        )
        if behind != self.paused:
            self.paused = behind
            self._sync()

    def on_event(self, fd: int, events: int) -> None:
        """Handle what the poll says of ``fd`` (one that ``owns`` says is ours)."""
        if fd == self.listen_fd:
            self._accept()
        elif fd == self.input:
            self.flush_input()
        else:
            caller = self.callers[fd]
            if events & select.POLLOUT and caller.queue:
                self._drain(fd, caller)
            if fd in self.callers and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._receive(fd, caller)

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        fd = sock.fileno()
        caller = self.callers[fd] = _Caller(sock)
        early, self.early = self.early or [], None  # the run's first caller takes what came before
        for message in early:
            self._send(fd, caller, message)
        self._flow()
        self._sync()

    def _receive(self, fd: int, caller: _Caller) -> None:
        try:
            message = caller.sock.recv(CHUNK + 1)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if not message:
            self._drop(fd)
            return
        kind, data = message[:1], message[1:]
        if kind == IN:
            self.feed(data)
        elif kind == END:
            if self.tty:
                self.feed(b"\x04")
            elif self.pending:
                self.closing = True
            else:
                self._close_input()
        elif kind == RESIZE and self.tty and self.input >= 0:
            try:
                rows, cols = (int(x) for x in data.split())
                set_size(self.input, rows, cols)
            except (ValueError, OSError, struct.error):
                pass

    def feed(self, data: bytes) -> None:
        """Give ``data`` to the process's input (none: it is dropped)."""
        if self.input < 0 or self.closing:
            return
        if not self.pending:
            try:
                data = data[os.write(self.input, data) :]
            except BlockingIOError:
                pass
            except OSError:  # the process has closed it
                return
        if data:
            self.pending += data
            self._sync()

    def flush_input(self) -> None:
        """Write what waits for the process's input, as much as it takes now."""
        try:
            done = os.write(self.input, self.pending) if self.pending else 0
        except BlockingIOError:
            return
        except OSError:
            done = len(self.pending)
        del self.pending[:done]
        if not self.pending and self.closing:
            self._close_input()
        self._sync()

    def output(self, kind: bytes, data: bytes) -> None:
        """Send what the process wrote (``kind``: OUT or ERR) to every caller."""
        message = kind + data
        if not self.callers:
            if self.early is not None and time.monotonic() > self.early_until:
                self.early = None  # nobody came in time: the log has it all
            if self.early is not None:
                self.early.append(message)
                self.early_size += len(message)
                self._flow()
            return
        for fd, caller in list(self.callers.items()):
            self._send(fd, caller, message)
        self._flow()

    def _send(self, fd: int, caller: _Caller, message: bytes) -> None:
        if not caller.queue:
            try:
                caller.sock.send(message)
                return
            except BlockingIOError:
                caller.progress = time.monotonic()
            except OSError:
                self._drop(fd)
                return
        caller.queue.append(message)
        caller.queued += len(message)
        if len(caller.queue) == 1:
            self._sync()
        if caller.queued > QUEUE_MAX + self.HIGH:  # (only a caller joining a full pipe gets here)
            self._drop(fd)

    def _drain(self, fd: int, caller: _Caller) -> None:
        while caller.queue:
            try:
                caller.sock.send(caller.queue[0])
            except BlockingIOError:
                break
            except OSError:
                self._drop(fd)
                return
            caller.queued -= len(caller.queue.pop(0))
            caller.progress = time.monotonic()
        self._flow()
        self._sync()

    def _drop(self, fd: int) -> None:
        caller = self.callers.pop(fd)
        caller.sock.close()
        self._flow()
        self._sync()

    def _close_input(self) -> None:
        if self.input >= 0 and not self.tty:
            os.close(self.input)
            self.watching.pop(self.input, None)  # (closed: the poller forgets it by itself)
            if self.poller is not None:
                try:
                    self.poller.unregister(self.input)
                except KeyError:
                    pass
        self.input = -1
        self.pending.clear()
        self.closing = False
        self._sync()

    def end_run(self, code: int, linger_until: float = 0.0) -> None:
        """The run has ended with ``code``: tell each caller (after what it
        has not taken yet, for up to a second each) and hang up. When none
        came during the run, wait for one until ``linger_until`` (a
        time.monotonic()): a caller that started a short run (``run -it
        IMG echo hi``) may connect only after it ended, and gets its output
        and its code all the same. (A remover comes and goes at once to end
        that wait: pylxcore.runtime.attach.let_go.)"""
        self._close_input()
        if self.poller is not None:
            for fd in self.watching:
                self.poller.unregister(fd)
            self.poller = None
        self.watching = {}
        self.outputs = []
        left = linger_until - time.monotonic()
        if self.early is not None and not self.callers and left > 0:
            if select.select([self.listen_fd], [], [], left)[0]:
                self._accept()
        exit_message = EXIT + str(code).encode()
        for fd, caller in list(self.callers.items()):
            caller.sock.settimeout(1)
            try:
                for message in [*caller.queue, exit_message]:
                    caller.sock.send(message)
            except OSError:
                pass
            caller.sock.close()
            del self.callers[fd]
        self.early = None

    def close(self) -> None:
        """Stop listening, and remove the socket (again: nothing). Raises nothing."""
        self.listener.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
