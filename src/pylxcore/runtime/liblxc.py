"""The one door into liblxc: the python3-lxc bindings and the ``lxc-*`` tools.

Nothing outside this module imports ``lxc`` or names an ``lxc-*`` binary. The
bindings report most failures as ``False``; here each becomes an ``LXCError``
naming the operation. ``lxc`` is imported on first use, not at import time, so
that ``import pylxcore`` stays cheap.
"""

from __future__ import annotations

import fcntl  # (the attached process can import nothing: see _exec_on_terminal)
import os
import termios
from typing import Any, Mapping, Sequence

from pylxcore.errors import LXCError

_lxc: Any = None

# LXCError.detail of an attach to a container whose init is gone (or going).
NOT_RUNNING = "the container is not running"


def _module() -> Any:
    global _lxc
    if _lxc is None:
        try:
            import lxc  # (deferred: the bindings do work at import time)
        except ImportError as err:
            raise LXCError(
                "the python3-lxc bindings are not installed (pip install lxc; needs the OS package lxc-dev)",
                operation="import",
                detail=str(err),
            ) from err
        _lxc = lxc
    return _lxc


def tool(name: str) -> str:
    """The path of an ``lxc-*`` tool, or LXCError when liblxc's tools are missing."""
    import shutil  # (deferred: 3 ms of every import pylxcore)

    path = shutil.which(name)
    if path is None:
        raise LXCError(f"{name} was not found: install the OS package 'lxc'", operation=name)
    return path


def execute_argv(
    name: str, lxcpath: str, argv: Sequence[str], log_file: str, inherit: Sequence[str] = ()
) -> list[str]:
    """The command line that runs ``argv`` as the main process of container ``name``.

    ``lxc-execute`` runs it under liblxc's minimal init (which reaps zombies and
    forwards signals), passes our stdout and stderr through apart, and exits
    with the process's exit code (128+N when killed by signal N). It reads the
    config at ``lxcpath/name/config`` and writes liblxc's errors to ``log_file``.

    ``inherit`` names variables that the container takes from lxc-execute's
    own environment (values a config line cannot carry: see
    ``lxcconfig.split_env``); the caller starts it with exactly those set. They
    are defines on the command line, not config lines: a config that names a
    variable missing from the environment of whoever loads it (the library,
    for an attach) fails to load, and only lxc-execute has them.

    The log file is named here, not in the config: liblxc creates a log file's
    missing parent directories whenever it loads a config, so an exec racing a
    remove would bring an empty container directory back to life.
    """
    defines = [f"--define=lxc.environment={key}" for key in inherit]
    return [
        tool("lxc-execute"), "-q", "-o", log_file, "-l", "ERROR", "-P", lxcpath, "-n", name, *defines,
        "--", *argv,
    ]


def attach_argv(
    name: str, lxcpath: str, argv: Sequence[str], env: Mapping[str, str], uid: int, gid: int
) -> list[str]:
    """The command line that runs ``argv`` in running container ``name`` as
    ``uid``:``gid`` with exactly ``env`` (``lxc-attach``: a program, for the
    supervisor, which cannot load the bindings; the library attaches with
    Handle.attach). Its exit code is the command's. It names the variables
    only: start it with ``env`` as its own environment, where only root can
    read the values (a command line is every host user's to read, and a
    container's variables may hold secrets). Raises LXCError when lxc-attach
    is not installed."""
    keep = [f"--keep-var={key}" for key in env]
    return [
        tool("lxc-attach"), "-q", "-P", lxcpath, "-n", name, "--clear-env", *keep,
        f"--uid={uid}", f"--gid={gid}", "--", *argv,
    ]  # fmt: skip


# lxc-execute's own PATH (liblxc looks up newuidmap along it); never a
# container's: split_env refuses to hand a PATH over that way.
_HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def execute_env(inherit: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The whole environment to start ``execute_argv``'s command with: the
    variables it hands to the container (``inherit``) and a PATH of its own.
    Nothing of the caller's: it runs as host root."""
    return {"PATH": _HOST_PATH, **dict(inherit)}


def available() -> str | None:
    """None when liblxc and its bindings can be used here, else why not."""
    if os.geteuid() != 0:
        return "pylxcore needs root (privileged LXC containers)"
    try:
        _module()
        tool("lxc-execute")
    except LXCError as err:
        return str(err)
    return None


def _exec_on_terminal(what: tuple[list[str], dict[str, str]]) -> int:
    """Run in the attached process, inside the container (liblxc has made it
    a session leader): take its stdin as its controlling terminal, then exec
    the command (looked up along ``env``'s PATH, as attach_run_command does).
    It can import nothing: the host's Python is not in the container."""
    argv, env = what
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError:
        pass  # (a terminal all the same, without job control)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as err:
        os.write(2, f"exec {argv[0]}: {err.strerror}\r\n".encode())
    os._exit(127)


class Handle:
    """A running (or stopped) container as liblxc sees it, by name and lxcpath."""

    def __init__(self, name: str, lxcpath: str) -> None:
        self.name = name
        self.lxcpath = lxcpath
        self._c: Any = None

    def _container(self) -> Any:
        if self._c is None:
            try:
                self._c = _module().Container(self.name, self.lxcpath)
            except RuntimeError as err:  # e.g. its config vanished: removed meanwhile
                raise self._fail("load", str(err)) from err
            # python3-lxc's Container holds itself through ``.network`` (a
            # ContainerNetworkList): a reference cycle, so the object and
            # liblxc's parsed config behind it (~25-120 KB) stayed until the
            # cycle collector ran, which a process making few Python objects
            # (the attach server) seldom does. We never use ``.network``.
            self._c.network = None
        return self._c

    def _fail(self, operation: str, detail: str = "") -> LXCError:
        return LXCError(
            f"liblxc could not {operation} container {self.name!r}" + (f": {detail}" if detail else ""),
            operation=operation,
            container=self.name,
            detail=detail,
        )

    def state(self) -> str:
        """ "STOPPED", "RUNNING", "FROZEN", "STARTING", "STOPPING", …"""
        return str(self._container().state)

    def init_pid(self) -> int | None:
        pid = int(self._container().init_pid)
        return pid if pid > 0 else None

    def freeze(self) -> None:
        if not self._container().freeze():
            raise self._fail("freeze")

    def unfreeze(self) -> None:
        if not self._container().unfreeze():
            raise self._fail("unfreeze")

    def cgroup_item(self, key: str) -> str | None:
        """A cgroup file's content for this container, or None when unreadable."""
        try:
            value = self._container().get_cgroup_item(key)
        except (KeyError, RuntimeError):
            return None
        if value is False or value is None:
            return None
        return str(value)

    def set_cgroup_item(self, key: str, value: str) -> None:
        """Write ``value`` into the running container's cgroup file ``key``
        (like ``memory.max``; liblxc finds its cgroup through the container's
        command socket). Raises LXCError when liblxc refuses (not running,
        no such file, a value the kernel refuses)."""
        try:
            done = self._container().set_cgroup_item(key, value)
        except (KeyError, RuntimeError, ValueError) as err:
            raise self._fail(f"set {key} = {value} of", str(err)) from err
        if not done:
            raise self._fail(f"set {key} = {value} of")

    def attach(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        uid: int,
        gid: int,
        stdin: int,
        stdout: int,
        stderr: int,
        tty: bool = False,
    ) -> int:
        """Start ``argv`` inside the running container; returns its pid (our child).

        The process gets a clean environment (only ``env``), the container's
        namespaces, cgroups, capabilities and seccomp policy. With ``tty``,
        ``stdin`` is a terminal (a pty's end) that becomes its controlling
        terminal: Ctrl-C and window sizes reach it.
        """
        lxc = _module()
        options: dict[str, Any] = {
            "env_policy": lxc.LXC_ATTACH_CLEAR_ENV,
            "extra_env_vars": [f"{k}={v}" for k, v in env.items()],
            "uid": uid,
            "gid": gid,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
        }
        if cwd:
            options["initial_cwd"] = cwd
        try:
            if tty:
                pid = self._container().attach(_exec_on_terminal, (list(argv), dict(env)), **options)
            else:
                pid = self._container().attach(lxc.attach_run_command, list(argv), **options)
        except (RuntimeError, ValueError, TypeError) as err:
            raise self._fail("attach to", str(err)) from err
        if not isinstance(pid, int) or pid <= 0:
            raise self._fail("attach to", NOT_RUNNING)
        return pid
