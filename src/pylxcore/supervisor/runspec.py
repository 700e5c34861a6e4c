"""What the library tells a supervisor to run, both halves of each file:
``run.spec`` (the lxc-execute command line, its environment, the log's caps,
the OOM counter, auto-removal) and, for a user-namespaced container,
``userns.spec`` (its id map and the layers to mount idmapped).

Plain classes, not attrs: the supervisor imports only the standard library.
"""

from __future__ import annotations

import os

RUN_SPEC = "run.spec"
USERNS_SPEC = "userns.spec"


def read_fields(ctrdir: str, name: str) -> list[str]:
    """The NUL-separated fields of the spec file ``name`` in ``ctrdir`` (the
    format of run.spec and policy.spec). Raises OSError (FileNotFoundError: none)."""
    with open(os.path.join(ctrdir, name), "rb") as fh:
        return [f.decode("utf-8", "surrogateescape") for f in fh.read().split(b"\0")]


def write_fields(ctrdir: str, name: str, fields: list[str]) -> None:
    """Write ``fields`` NUL-separated as the spec file ``name`` in ``ctrdir``,
    atomically (temp + rename), mode 0600: they may hold the container's
    environment. Raises OSError."""
    tmp = os.path.join(ctrdir, f"{name}.{os.getpid()}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as fh:
        fh.write(b"\0".join(f.encode("utf-8", "surrogateescape") for f in fields))
    os.replace(tmp, os.path.join(ctrdir, name))


class RunSpec:
    """``run.spec``: NUL-separated fields ``auto_remove`` ("0"/"1"), the OOM
    counter file to watch (or ""), the log's size cap in bytes (-1: none) and
    its number of files, how the main process takes its input and output
    ("" the default: no input, its output on pipes; "i": its stdin from the
    attach socket, "t": on a terminal, "it": both; see attachsock), the
    terminal's size at the start ("ROWS COLS", or ""), the number N of
    environment entries that follow
    (``KEY=VALUE``: lxc-execute's whole environment, see
    pylxcore.runtime.lxcconfig.split_env), then the lxc-execute command line."""

    __slots__ = (
        "argv", "auto_remove", "console_size", "env", "log_max_files", "log_max_size", "oom_path", "stdin",
        "tty",
    )  # fmt: skip

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        auto_remove: bool = False,
        oom_path: str = "",
        log_max_size: int = -1,
        log_max_files: int = 1,
        tty: bool = False,
        stdin: bool = False,
        console_size: tuple[int, int] = (24, 80),
    ) -> None:
        self.argv = argv
        self.env = env
        self.auto_remove = auto_remove
        self.oom_path = oom_path
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self.tty = tty
        self.stdin = stdin
        self.console_size = console_size

    @classmethod
    def read(cls, ctrdir: str) -> RunSpec:
        """The spec in ``ctrdir``. Raises OSError (FileNotFoundError: none),
        ValueError when it is not one."""
        fields = read_fields(ctrdir, RUN_SPEC)
        try:
            n = int(fields[6])
            env = dict(item.split("=", 1) for item in fields[7 : 7 + n])
            rows, cols = (int(x) for x in fields[5].split()) if fields[5] else (24, 80)
            return cls(
                fields[7 + n :],
                env=env,
                auto_remove=fields[0] == "1",
                oom_path=fields[1],
                log_max_size=int(fields[2]),
                log_max_files=int(fields[3]),
                stdin="i" in fields[4],
                tty="t" in fields[4],
                console_size=(rows, cols),
            )
        except IndexError as err:
            raise ValueError(f"{RUN_SPEC} in {ctrdir} has too few fields") from err

    def write(self, ctrdir: str) -> None:
        """Write it into ``ctrdir``, atomically, mode 0600 (see write_fields). Raises OSError."""
        items = [f"{k}={v}" for k, v in self.env.items()]
        fields = [
            "1" if self.auto_remove else "0",
            self.oom_path,
            str(self.log_max_size),
            str(self.log_max_files),
            ("i" if self.stdin else "") + ("t" if self.tty else ""),
            f"{self.console_size[0]} {self.console_size[1]}",
            str(len(items)),
            *items,
            *self.argv,
        ]
        write_fields(ctrdir, RUN_SPEC, fields)


class UsernsSpec:
    """``userns.spec``, what the supervisor mounts for a user-namespaced
    container (see pylxcore.supervisor.mounts): ``ids`` (uid start, uid count,
    gid start, gid count), the image's layer dirs (``lowers``, topmost first),
    and the host paths liblxc reads while it starts the container (``keep``;
    see mounts.userns_rootfs why), one per line."""

    __slots__ = ("ids", "keep", "lowers")

    def __init__(self, ids: tuple[int, int, int, int], lowers: list[str], keep: list[str]) -> None:
        self.ids = ids
        self.lowers = lowers
        self.keep = keep

    @staticmethod
    def exists(ctrdir: str) -> bool:
        """Whether the container at ``ctrdir`` is user-namespaced (has this spec). Raises nothing."""
        return os.path.exists(os.path.join(ctrdir, USERNS_SPEC))

    @classmethod
    def read(cls, ctrdir: str) -> UsernsSpec:
        """The spec in ``ctrdir``. Raises OSError, ValueError when it is not one."""
        with open(os.path.join(ctrdir, USERNS_SPEC)) as fh:
            lines = fh.read().splitlines()
        ustart, ucount, gstart, gcount = (int(x) for x in lines[0].split())
        lowers = [line[len("lower ") :] for line in lines[1:] if line.startswith("lower ")]
        keep = [line[len("keep ") :] for line in lines[1:] if line.startswith("keep ")]
        return cls((ustart, ucount, gstart, gcount), lowers, keep)

    def write(self, ctrdir: str) -> None:
        """Write it into ``ctrdir`` (``keep`` made absolute). Raises OSError."""
        text = (
            " ".join(map(str, self.ids))
            + "\n"
            + "".join(f"lower {p}\n" for p in self.lowers)
            + "".join(f"keep {os.path.abspath(p)}\n" for p in self.keep)
        )
        with open(os.path.join(ctrdir, USERNS_SPEC), "w") as fh:
            fh.write(text)
