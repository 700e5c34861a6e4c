"""The ``pylxcore`` command line, on real LXC.

Every command runs twice through the ``cli`` fixture: in-process through
``main([...])`` (output read with capsys) and as ``python -m pylxcore``. The
store root is the ``engine`` fixture's, so its cleanup check (no container,
mount or cgroup left) covers the CLI too. ``test_docs_walkthrough`` runs every
``$ ...`` line of docs/cli.md, in order, with the exit codes it documents.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

from pylxcore import Engine
from pylxcore.cli import containers as cli_containers
from pylxcore.cli import images as cli_images
from pylxcore.cli import main
from pylxcore.cli.output import human_duration, table
from pylxcore.cli.parser import build_parser, command_word
from pylxcore.spec.sizes import human_size
from tests.test_docs import matches

IMG = "test/busybox:1"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


class Result(NamedTuple):
    code: int
    out: str
    err: str


class CLI:
    """Runs ``pylxcore --root ROOT ARGS...`` in-process or as a subprocess."""

    def __init__(
        self, mode: str, root: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.mode = mode
        self.root = root
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, root: bool = True
    ) -> Result:
        argv = ["--root", self.root, *args] if root else list(args)
        if self.mode == "subprocess":
            proc = subprocess.run(
                [sys.executable, "-m", "pylxcore", *argv],
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                env={**os.environ, **(env or {})},
                timeout=120,
                check=False,
            )
            return Result(proc.returncode, proc.stdout, proc.stderr)
        self._capsys.readouterr()
        with self._monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            if stdin is not None:
                m.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
            code = main(argv)
        out, err = self._capsys.readouterr()
        return Result(code, out, err)


@pytest.fixture(params=["in-process", "subprocess"])
def cli(
    request: pytest.FixtureRequest,
    engine: Engine,
    busybox: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> CLI:
    """The CLI on the engine's root, where ``test/busybox:1`` is built."""
    return CLI(request.param, str(engine.root), capsys, monkeypatch)


def one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one ``pylxcore: error:`` line."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pylxcore: error: "), err
    assert "Traceback" not in err
    return lines[0]


def columns(header: str, line: str) -> dict[str, str]:
    """Cut a table line at the header's column starts (columns are separated by 3+ spaces)."""
    names = re.split(r" {2,}", header.strip())
    starts = [header.index(name) for name in names]
    ends = starts[1:] + [None]
    return {name: line[s:e].strip() for name, s, e in zip(names, starts, ends)}


def wait_exited(engine: Engine, name: str) -> None:
    engine.containers.get(name).wait(timeout=30)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


# --------------------------------------------------------------------------
# Helpers (no LXC)
# --------------------------------------------------------------------------


def test_table_aligns_columns() -> None:
    text = table(("A", "LONG HEADER", "C"), [("xxxxx", "1", "end"), ("y", "22", "")])
    assert text.splitlines() == ["A       LONG HEADER   C", "xxxxx   1             end", "y       22"]
    assert table(("ONE", "TWO"), []) == "ONE   TWO"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (61, "About a minute"),
     (600, "10 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"),
     (21 * 86400, "3 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("argv", "word"),
    [(["ps"], "ps"), (["--root", "R", "--debug", "run", "--rm", "x"], "run"),
     (["--root=R", "images"], "images"), (["--debug", "ps", "-a"], "ps"), ([], None), (["--help"], None),
     (["--ro", "R", "ps"], None),
     (["nosuch"], None), (["--root", "ps"], None), (["-x", "ps"], None)],
)
def test_command_word_only_when_certain(argv: list[str], word: str | None) -> None:
    # Parsing a known command builds its sub-parser alone; anything else gets the whole parser.
    assert command_word(argv) == word


def test_one_command_parses_as_with_the_whole_parser() -> None:
    for argv in (["--root", "R", "run", "--rm", "-e", "A=1", "img", "sh", "-c", "x"], ["--debug", "ps", "-a"],
                 ["kill", "-s", "TERM", "a", "b"], ["--root=R", "logs", "-f", "--tail", "3", "c"]):
        name = command_word(argv)
        assert name is not None
        assert build_parser(only=name).parse_args(argv) == build_parser().parse_args(argv)


def test_usage_errors_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["run"]) == 2  # no IMAGE
    assert main(["--help"]) == 0
    assert "build" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pylxcore ")
    proc = subprocess.run([sys.executable, "-m", "pylxcore", "ps", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--format" in proc.stdout


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------


def test_run_streams_both_streams_and_passes_the_exit_code(cli: CLI, engine: Engine) -> None:
    r = cli("run", "--rm", IMG, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r == Result(3, "out\n", "err\n")
    assert engine.containers.list(all=True) == []


def test_run_without_rm_keeps_the_container(cli: CLI, engine: Engine) -> None:
    r = cli("run", "--name", "keep", IMG, "echo", "hi")
    assert r == Result(0, "hi\n", "")
    c = engine.containers.get("keep")
    assert c.state.value == "exited" and c.exit_code == 0
    assert cli("rm", "keep") == Result(0, "keep\n", "")


def test_run_detached_prints_the_name_and_a_name_clash_is_125(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "x", IMG) == Result(0, "x\n", "")
    assert engine.containers.get("x").status() == "running"
    r = cli("run", "-d", "--name", "x", IMG)
    assert r.code == 125 and r.out == ""
    assert "a container named 'x' already exists" in one_error_line(r.err)
    r = cli("run", "-d", IMG, "sleep", "60")  # no name: a generated one
    assert r.code == 0 and r.out.startswith("px-")
    assert cli("rm", "-f", "x", r.out.strip()).code == 0
    assert engine.containers.list(all=True) == []


def test_run_detached_rm_removes_itself(cli: CLI, engine: Engine) -> None:
    r = cli("run", "-d", "--rm", "--name", "gone", IMG, "true")
    assert r == Result(0, "gone\n", "")
    for _ in range(3):  # a fast command may be gone before run() returns: still a success
        r = cli("run", "-d", "--rm", IMG, "true")
        assert r.code == 0 and r.out.startswith("px-") and r.err == ""
    deadline = time.monotonic() + 20
    while engine.containers.list(all=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.containers.list(all=True) == []


def test_run_unknown_image_is_125(cli: CLI, engine: Engine) -> None:
    r = cli("run", "nosuch:1")
    assert r.code == 125 and r.out == ""
    assert "no image 'nosuch:1'" in one_error_line(r.err)
    assert engine.containers.list(all=True) == []


def test_run_of_a_command_that_is_not_there_is_127(cli: CLI, engine: Engine) -> None:
    r = cli("run", "--rm", IMG, "no-such-program")
    assert r.code == 127 and r.out == ""
    assert "exec: 'no-such-program': not found in $PATH" in one_error_line(r.err)
    assert cli("run", "-d", IMG, "/no/such").code == 127
    assert engine.containers.list(all=True) == []


def test_run_env_workdir_user(cli: CLI) -> None:
    r = cli(
        "run", "--rm", "-e", "A=1", "-e", "FROM_HOST", "-w", "/data", "-u", "nobody", IMG,
        "sh", "-c", 'echo "$A $FROM_HOST"; pwd; id -u',
        env={"FROM_HOST": "h"},
    )
    # Known library issue (reported): with a non-root user, liblxc's init sometimes writes
    # 'Failed to open "/sys/fs/cgroup/pids///pids.max"' to the container's stderr.
    err = "".join(line for line in r.err.splitlines(keepends=True) if "pids.max" not in line)
    assert (r.code, r.out, err) == (0, "1 h\n/data\n65534\n", "")
    r = cli("run", "--rm", "-e", "=x", IMG, "true")
    assert r.code == 125 and "bad environment variable" in one_error_line(r.err)


def test_run_network(cli: CLI, engine: Engine) -> None:
    r = cli("run", "--rm", IMG, "cat", "/proc/net/dev")
    assert r.code == 0 and "lo:" in r.out and "eth0" not in r.out
    assert cli("run", "-d", "--name", "net", "--network", "host", IMG).code == 0
    assert engine.containers.get("net").inspect()["network"] == "host"
    assert cli("rm", "-f", "net").code == 0
    r = cli("run", "--rm", "--network", "bridge", IMG, "cat", "/proc/net/dev")  # see test_network.py
    assert r.code == 0 and "eth0" in r.out
    assert cli("run", "--rm", "--network", "nosuch", IMG, "true").code == 125  # no such network


def test_run_userns(cli: CLI) -> None:
    r = cli("run", "--rm", "--userns", IMG, "cat", "/proc/self/uid_map")
    assert r.code == 0 and r.out.split()[0] == "0" and r.out.split()[1] != "0"
    r = cli("run", "--rm", IMG, "cat", "/proc/self/uid_map")
    assert r.out.split()[:2] == ["0", "0"]


def test_run_volume_read_only_and_read_write(cli: CLI, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("host data\n")
    r = cli("run", "--rm", "-v", f"{vol}:/mnt:ro", IMG, "sh", "-c", "cat /mnt/f; touch /mnt/new")
    assert r.code == 1
    assert r.out == "host data\n"
    assert "Read-only file system" in r.err
    assert not (vol / "new").exists()
    r = cli("run", "--rm", "-v", f"{vol}:/mnt", IMG, "sh", "-c", "echo w > /mnt/new")
    assert r.code == 0 and (vol / "new").read_text() == "w\n"
    r = cli("run", "--rm", "-v", "nocolon", IMG, "true")
    assert r.code == 125 and "SOURCE:TARGET" in one_error_line(r.err)
    r = cli("run", "--rm", "-v", f"{tmp_path}/missing:/mnt", IMG, "true")
    assert r.code == 125 and "does not exist" in one_error_line(r.err)


def test_run_limits_reach_the_container(cli: CLI, engine: Engine) -> None:
    r = cli("run", "-d", "--name", "lim", "-m", "64M", "--cpus", "0.5", "--pids", "20", IMG)
    assert r.code == 0, r.err
    r = cli("inspect", "lim")
    assert r.code == 0
    (info,) = json.loads(r.out)
    assert info["limits"] == {"memory": "64M", "cpus": 0.5, "pids": 20}
    (stats,) = json_lines(cli("stats", "--no-stream", "--format", "json", "lim").out)
    assert stats["memory_limit_bytes"] == 64 * 1024 * 1024
    # The pids limit is enforced: 20 processes at most.
    r = cli("exec", "lim", "sh", "-c", "for i in $(seq 40); do sleep 1 & done; wait")
    assert r.code != 0 or "fork" in r.err.lower() or "resource" in r.err.lower()
    assert cli("rm", "-f", "lim").code == 0
    r = cli("run", "--rm", "-m", "lots", IMG, "true")
    assert r.code == 125 and "limits.memory" in one_error_line(r.err)
    assert cli("run", "--rm", "--cpus", "half", IMG, "true").code == 2


# --------------------------------------------------------------------------
# exec
# --------------------------------------------------------------------------


def test_exec(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "ex", IMG).code == 0
    assert cli("exec", "ex", "sh", "-c", "exit 5").code == 5
    assert cli("exec", "ex", "sh", "-c", "echo o; echo e >&2") == Result(0, "o\n", "e\n")
    r = cli("exec", "-e", "A=2", "-w", "/data", "-u", "nobody", "ex", "sh", "-c", "echo $A; pwd; id -u")
    assert r == Result(0, "2\n/data\n65534\n", "")
    assert cli("exec", "-i", "ex", "cat", stdin="fed\nlines\n") == Result(0, "fed\nlines\n", "")
    assert cli("exec", "ex", "cat", stdin="not fed\n") == Result(0, "", "")  # no -i: no stdin
    r = cli("exec", "ex")
    assert r.code == 2 and "a command is required" in r.err
    # Docker's codes: 1 for the daemon's errors, 126 for a process that cannot start.
    r = cli("exec", "nosuch", "true")
    assert r.code == 1 and "no container 'nosuch'" in one_error_line(r.err)
    r = cli("exec", "-u", "nobody:nosuchgroup", "ex", "true")
    assert r.code == 126 and "nosuchgroup" in one_error_line(r.err)
    r = cli("exec", "ex", "/no/such")
    assert r.code == 126 and "'/no/such': no such file" in one_error_line(r.err)
    assert cli("stop", "-t", "1", "ex").code == 0
    r = cli("exec", "ex", "true")
    assert r.code == 1 and "it is exited" in one_error_line(r.err)
    assert cli("rm", "ex") == Result(0, "ex\n", "")


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------


def test_logs(cli: CLI, engine: Engine) -> None:
    script = "echo e1 >&2; sleep 0.3; echo o1; echo o2; echo o3"
    assert cli("run", "-d", "--name", "lg", IMG, "sh", "-c", script).code == 0
    wait_exited(engine, "lg")
    assert cli("logs", "lg") == Result(0, "o1\no2\no3\n", "e1\n")
    assert cli("logs", "--tail", "2", "lg") == Result(0, "o2\no3\n", "")
    assert cli("logs", "--tail", "4", "lg") == Result(0, "o1\no2\no3\n", "e1\n")
    assert cli("logs", "--tail", "0", "lg") == Result(0, "", "")
    r = cli("logs", "-t", "lg")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z "
    assert re.fullmatch(f"({stamp}o\\d\n){{3}}", r.out), r.out
    assert re.fullmatch(f"{stamp}e1\n", r.err), r.err
    assert cli("logs", "-f", "lg") == Result(0, "o1\no2\no3\n", "e1\n")  # exited: returns at once
    assert cli("logs", "-f", "--tail", "1", "lg") == Result(0, "o3\n", "e1\n")  # per stream
    r = cli("logs", "nosuch")
    assert r.code == 1 and "no container 'nosuch'" in one_error_line(r.err)
    assert cli("rm", "lg").code == 0


def test_logs_follow_streams_until_exit(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "lf", IMG, "sh", "-c", "echo a; sleep 1; echo b >&2; echo c").code == 0
    started = time.monotonic()
    assert cli("logs", "-f", "lf") == Result(0, "a\nc\n", "b\n")
    assert time.monotonic() - started > 0.5  # it waited for the container
    assert cli("rm", "lf").code == 0


# --------------------------------------------------------------------------
# start, stop, restart, kill, rm
# --------------------------------------------------------------------------


def test_lifecycle(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "lc", IMG).code == 0
    assert cli("stop", "-t", "1", "lc") == Result(0, "lc\n", "")
    assert engine.containers.get("lc").state.value == "exited"
    r = cli("stop", "lc")
    assert r.code == 1 and r.out == ""
    assert one_error_line(r.err) == "pylxcore: error: cannot stop container 'lc': it is exited"
    assert cli("start", "lc") == Result(0, "lc\n", "")
    assert engine.containers.get("lc").state.value == "running"
    r = cli("start", "lc")
    assert r.code == 1 and "it is running" in one_error_line(r.err)
    assert cli("restart", "-t", "1", "lc") == Result(0, "lc\n", "")
    assert engine.containers.get("lc").state.value == "running"
    assert cli("kill", "-s", "TERM", "lc") == Result(0, "lc\n", "")
    assert engine.containers.get("lc").wait(timeout=10) == 143
    assert cli("start", "lc").code == 0
    assert cli("kill", "lc") == Result(0, "lc\n", "")
    assert engine.containers.get("lc").wait(timeout=10) == 137
    r = cli("kill", "-s", "NOPE", "lc")
    assert r.code == 2 and "unknown signal 'NOPE'" in r.err
    assert cli("start", "lc").code == 0
    r = cli("rm", "lc")
    assert r.code == 1 and "use force" in one_error_line(r.err)
    r = cli("rm", "-f", "lc", "nosuch")  # each name on its own: one fails, the other goes
    assert r.code == 1 and r.out == "lc\n"
    assert "no container 'nosuch'" in one_error_line(r.err)
    assert engine.containers.list(all=True) == []


# --------------------------------------------------------------------------
# ps, images, stats
# --------------------------------------------------------------------------


def test_ps_table_quiet_and_json(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "p1", IMG).code == 0
    assert cli("run", "--name", "p2", IMG, "sh", "-c", "exit 4").code == 4
    r = cli("ps")
    header, *rows = r.out.splitlines()
    assert re.split(r" {3,}", header) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
    assert len(rows) == 1
    row = columns(header, rows[0])
    p1 = engine.containers.get("p1")
    assert row["CONTAINER ID"] == p1.id[:12]
    assert row["IMAGE"] == IMG and row["COMMAND"] == '"sleep 3600"' and row["NAMES"] == "p1"
    assert row["STATUS"].startswith("Up ") and row["CREATED"].endswith(" ago")
    r = cli("ps", "-a")
    header, *lines = r.out.splitlines()
    rows_by_name = {columns(header, line)["NAMES"]: columns(header, line) for line in lines}
    assert set(rows_by_name) == {"p1", "p2"}
    assert lines[0].rstrip().endswith("p2")  # newest first
    assert rows_by_name["p2"]["STATUS"].startswith("Exited (4) ")
    assert rows_by_name["p2"]["COMMAND"] == '"sh -c exit 4"'
    assert cli("ps", "-q").out == p1.id[:12] + "\n"
    ids = cli("ps", "-a", "-q", "--no-trunc").out.split()
    assert sorted(ids) == sorted(c.id for c in engine.containers.list(all=True))
    items = json_lines(cli("ps", "-a", "--format", "json").out)
    assert {i["name"]: (i["state"], i["exit_code"]) for i in items} == {
        "p1": ("running", None), "p2": ("exited", 4)
    }
    assert items[0]["command"] == ["sh", "-c", "exit 4"] and items[0]["image"] == IMG
    assert cli("rm", "-f", "p1", "p2").code == 0
    assert cli("ps", "-a").out == "CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   NAMES\n"
    assert cli("ps", "--format", "json").out == ""


def test_ps_truncates_long_commands(cli: CLI) -> None:
    long = "echo " + "x" * 40
    assert cli("run", "--name", "long", IMG, "sh", "-c", long).code == 0
    header, line = cli("ps", "-a").out.splitlines()
    assert columns(header, line)["COMMAND"] == '"sh -c echo xxxxxxxx…"'
    header, line = cli("ps", "-a", "--no-trunc").out.splitlines()
    assert f'"sh -c {long}"' in line
    assert cli("rm", "long").code == 0


def test_images_tag_and_rmi(cli: CLI, engine: Engine) -> None:
    image = engine.images.get(IMG)
    header, *lines = cli("images").out.splitlines()
    assert re.split(r" {3,}", header) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert len(lines) == 1
    row = columns(header, lines[0])
    assert row == {
        "REPOSITORY": "test/busybox", "TAG": "1", "IMAGE ID": image.short_id,
        "CREATED": row["CREATED"], "SIZE": human_size(image.size),
    }
    assert row["CREATED"].endswith(" ago")
    assert cli("tag", IMG, "test/busybox:stable") == Result(0, "", "")
    items = json_lines(cli("images", "--format", "json").out)
    assert {(i["repository"], i["tag"], i["id"]) for i in items} == {
        ("test/busybox", "1", image.id), ("test/busybox", "stable", image.id)
    }
    assert cli("images", "-q").out == image.short_id + "\n"  # one line per image
    assert cli("images", "-q", "--no-trunc").out == image.id + "\n"
    assert cli("rmi", "test/busybox:stable") == Result(0, "Untagged test/busybox:stable\n", "")
    r = cli("rmi", "nosuch:1")
    assert r.code == 1 and "no image 'nosuch:1'" in one_error_line(r.err)
    r = cli("tag", "nosuch:1", "x:1")
    assert r.code == 1 and "no image" in one_error_line(r.err)
    r = cli("tag", IMG, "Bad Name")
    assert r.code == 1 and "Bad Name" in one_error_line(r.err)
    # In use by a container: refused, unless forced (then it shows as <none>).
    assert cli("run", "-d", "--name", "user", IMG).code == 0
    r = cli("rmi", IMG)
    assert r.code == 1 and "used by container(s) user" in one_error_line(r.err)
    assert cli("rmi", "-f", IMG) == Result(0, f"Untagged {IMG}\n", "")
    header, line = cli("images").out.splitlines()
    assert columns(header, line)["REPOSITORY"] == "<none>" and columns(header, line)["TAG"] == "<none>"
    assert cli("rm", "-f", "user").code == 0
    r = cli("prune")
    assert r.code == 0 and f"Deleted images:\n  {image.id}\n" in r.out
    assert cli("images").out == "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n"


def test_stats(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "st", "-m", "32M", IMG).code == 0
    r = cli("stats", "--no-stream")
    header, line = r.out.splitlines()
    assert re.split(r" {3,}", header) == [
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"
    ]
    row = columns(header, line)
    assert row["NAME"] == "st" and row["MEM USAGE / LIMIT"].endswith(" / 32MiB")
    assert row["CPU %"].endswith("%") and int(row["PIDS"]) >= 1
    (item,) = json_lines(cli("stats", "--no-stream", "--format", "json", "st").out)
    assert item["name"] == "st" and item["memory_limit_bytes"] == 32 * 1024 * 1024
    assert isinstance(item["memory_bytes"], int) and isinstance(item["pids"], int)
    r = cli("stats", "--no-stream", "st", "nosuch")
    assert r.code == 1 and "st" in r.out and "no container 'nosuch'" in one_error_line(r.err)
    assert cli("stop", "-t", "1", "st").code == 0
    # None running: only the header.
    header = "CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %   NET I/O   BLOCK I/O   PIDS\n"
    assert cli("stats", "--no-stream").out == header
    r = cli("stats", "--no-stream", "st")
    assert r.code == 1 and "it is exited" in one_error_line(r.err)
    assert cli("rm", "st").code == 0


# --------------------------------------------------------------------------
# inspect, prune
# --------------------------------------------------------------------------


def test_inspect(cli: CLI, engine: Engine) -> None:
    assert cli("run", "-d", "--name", "in", "-e", "K=V", IMG).code == 0
    r = cli("inspect", "in")
    assert r.code == 0
    (info,) = json.loads(r.out)
    assert info == json.loads(json.dumps(engine.containers.get("in").inspect()))
    assert info["state"] == "running" and info["env"]["K"] == "V" and info["command"] == ["sleep", "3600"]
    r = cli("inspect", IMG, "in")
    image, container = json.loads(r.out)
    assert image["id"] == engine.images.get(IMG).id and image["tags"] == [IMG]
    assert image["config"]["cmd"] == ["sleep", "3600"] and image["layers"][0]["index"] == 0
    assert container["name"] == "in"
    r = cli("inspect", "nosuch")
    assert r.code == 1 and json.loads(r.out) == []
    assert "no container or image 'nosuch'" in one_error_line(r.err)
    r = cli("inspect", "--type", "image", "in")
    assert r.code == 1 and "no image 'in:latest'" in one_error_line(r.err)
    assert json.loads(cli("inspect", "--type", "container", "in").out)[0]["name"] == "in"
    assert cli("rm", "-f", "in").code == 0


def test_prune(cli: CLI, engine: Engine, tmp_path: Path) -> None:
    assert cli("run", "--name", "done", IMG, "true").code == 0
    assert cli("run", "-d", "--name", "alive", IMG).code == 0
    yaml = tmp_path / "image.yaml"
    yaml.write_text("name: p/img:1\nlayers:\n  - run: echo one > /f\n")
    assert cli("build", "-q", str(yaml)).code == 0
    old = engine.images.get("p/img:1").id
    yaml.write_text("name: p/img:1\nlayers:\n  - run: echo two > /f\n")
    assert cli("build", "-q", str(yaml)).code == 0  # the old one is now untagged
    r = cli("prune")
    assert r.code == 0
    assert "Deleted containers:\n  done\n" in r.out
    assert f"Deleted images:\n  {old}\n" in r.out
    assert "Deleted layers: " in r.out and "Total reclaimed space: " in r.out
    assert [c.name for c in engine.containers.list(all=True)] == ["alive"]
    assert cli("prune").out == "Total reclaimed space: 0B\n"
    assert cli("rm", "-f", "alive").code == 0


# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------


def test_build(cli: CLI, engine: Engine, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "hello.txt").write_text("hello from the context\n")
    (app / "image.yaml").write_text(
        "name: t/app:1\n"
        "base: busybox\n"
        "layers:\n"
        "  - copy: {src: hello.txt, dest: /app/hello.txt}\n"
        "  - run: echo building; cat /app/hello.txt\n"
        "cmd: [cat, /app/hello.txt]\n"
    )
    r = cli("build", str(app / "image.yaml"))
    assert r.code == 0, r.err
    assert "Step 2/2 : RUN echo building; cat /app/hello.txt" in r.out
    assert "  | hello from the context" in r.out
    assert r.out.endswith("Successfully tagged t/app:1\n")
    r = cli("build", str(app / "image.yaml"))
    assert "[CACHED]" in r.out and "[RUN]" not in r.out
    # A folder means its image.yaml; -t renames (and may be repeated); -q prints only the id.
    r = cli("build", "-q", "--no-cache", "-t", "t/app:2", "-t", "t/app:3", str(app))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.out), r.out
    assert engine.images.get("t/app:2").id == engine.images.get("t/app:3").id == r.out.strip()
    assert cli("run", "--rm", "t/app:2") == Result(0, "hello from the context\n", "")
    r = cli("build", "-t", "Bad:Name", str(app))
    assert r.code == 1 and "Bad" in one_error_line(r.err)
    r = cli("build", str(tmp_path / "missing.yaml"))
    assert r.code == 1 and "cannot read the image file" in one_error_line(r.err)


def test_build_bad_yaml_names_file_and_line(cli: CLI, tmp_path: Path) -> None:
    bad = tmp_path / "image.yaml"
    bad.write_text("name: x:1\nlayers:\n  - run: true\n  - bogus: 1\n")
    r = cli("build", str(bad))
    assert r.code == 1 and r.out == ""
    line = one_error_line(r.err)
    assert line.startswith(f"pylxcore: error: {bad}:4: layers[1].bogus: unknown key 'bogus'")


def test_build_failure(cli: CLI, tmp_path: Path) -> None:
    failing = tmp_path / "image.yaml"
    failing.write_text("name: x:1\nlayers:\n  - run: echo line1; exit 7\n")
    r = cli("build", str(failing))
    assert r.code == 1
    assert "  | line1" in r.out  # shown as it ran
    assert "step 1 (RUN echo line1; exit 7)" in one_error_line(r.err) and "7" in r.err
    r = cli("build", "-q", str(failing))
    assert r.code == 1 and r.out == ""
    *tail, last = r.err.splitlines()
    assert tail == ["  | line1"] and last.startswith("pylxcore: error: step 1")


# --------------------------------------------------------------------------
# Global options, errors, signals, completion
# --------------------------------------------------------------------------


def test_root_from_environment_or_after_the_command(cli: CLI) -> None:
    r = cli("images", "-q", root=False, env={"PYLXCORE_ROOT": cli.root})
    assert r.code == 0 and len(r.out.split()) == 1
    r = cli("images", "--root", cli.root, "--format", "json", root=False)
    assert json_lines(r.out)[0]["name"] == IMG


def test_debug_shows_the_traceback(cli: CLI) -> None:
    r = cli("--debug", "run", "nosuch:1", root=True)
    assert r.code == 125
    assert "Traceback (most recent call last)" in r.err and "ImageNotFound" in r.err
    assert r.err.splitlines()[-1].startswith("pylxcore: error: no image 'nosuch:1'")


def test_an_unexpected_error_is_one_line_too(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_containers, "cmd_ps", broken)
    assert main(["--root", str(engine.root), "ps"]) == 1
    assert capsys.readouterr().err == "pylxcore: error: RuntimeError: boom (--debug shows the traceback)\n"


def test_ctrl_c_reaches_the_cli_whichever_of_its_threads_gets_it(engine: Engine, busybox: str) -> None:
    # run follows the logs on two threads; a process-directed SIGINT may be
    # handed to one of them, and the main thread must still see it. kill() of
    # a thread's own id hands the signal to that thread first. The command
    # runs in this process (PYLXCORE_WARM=0): a warm server's child has no
    # terminal to get signals from, its client forwards them (test_warm_cli).
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylxcore", "--root", str(engine.root), "run", "--rm", "--name", "kt", IMG,
         "sh", "-c", "trap 'echo trapped; exit 9' INT; echo started; while true; do sleep 0.1; done"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYLXCORE_WARM": "0"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    others = [int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid]
    assert others, "the log threads"
    time.sleep(0.3)  # for the main thread to be waiting for them (not a timing assertion)
    os.kill(others[0], signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # As docker run's signal proxy: the container's process got the Ctrl-C; its
    # trap's output and exit code are the command's.
    assert (proc.returncode, out, err) == (9, b"trapped\n", b"")
    assert not engine.containers.exists("kt")


def test_keyboard_interrupt_exits_130(
    engine: Engine, busybox: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_images, "cmd_images", interrupted)
    assert main(["--root", str(engine.root), "images"]) == 130
    assert "Traceback" not in capsys.readouterr().err

    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    for extra in (["--rm"], []):
        proc = subprocess.Popen(
            [sys.executable, "-m", "pylxcore", "--root", str(engine.root), "run", *extra, "--name", "ki", IMG,
             "sh", "-c", "trap 'echo trapped; exit 9' INT; echo started; while true; do sleep 0.1; done"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        # As docker run's signal proxy: the SIGINT reached the container, whose
        # trap's output and exit code are the command's.
        assert (proc.returncode, out, err) == (9, b"trapped\n", b"")
        if extra:  # --rm: removed
            assert not engine.containers.exists("ki")
        else:
            assert engine.containers.get("ki").wait(timeout=10) == 9
            engine.containers.get("ki").remove()
    # A process that ignores Ctrl-C: the third one stops the command (130); the container runs on.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pylxcore", "--root", str(engine.root), "run", "--name", "deaf", IMG,
         "sh", "-c", "trap '' INT; echo started; while true; do sleep 0.1; done"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # one at a time (not a timing assertion: the count is what matters)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and b"Traceback" not in err
    deaf = engine.containers.get("deaf")
    assert deaf.status() == "running"
    deaf.remove(force=True)


def test_completion_bash(cli: CLI, tmp_path: Path) -> None:
    r = cli("completion", "bash")
    assert r.code == 0 and "complete -o default -F _pylxcore pylxcore" in r.out
    script = tmp_path / "pylxcore.bash"
    script.write_text(r.out)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert cli("run", "-d", "--name", "comp1", IMG).code == 0
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pylxcore").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pylxcore "$@"\n')
    (bindir / "pylxcore").chmod(0o755)

    def complete(*words: str) -> list[str]:
        line = " ".join(shlex.quote(w) for w in ("pylxcore", "--root", cli.root, *words))
        program = f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) + 2}; _pylxcore; " \
                  'printf "%s\\n" "${COMPREPLY[@]}"'
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
        out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env).stdout
        return sorted(out.split())

    assert complete("st") == ["start", "stats", "stop"]
    assert complete("stop", "co") == ["comp1"]
    assert complete("run", "test/") == [IMG]
    assert complete("run", "--n") == ["--name", "--network", "--network-alias", "--no-healthcheck"]
    assert cli("rm", "-f", "comp1").code == 0


# --------------------------------------------------------------------------
# docs/cli.md: every example runs, with the exit code it shows
# --------------------------------------------------------------------------


def doc_commands() -> Iterator[tuple[str, int, str]]:
    """Each ``$ command`` line of the docs' console blocks, with its expected
    exit code (0, or N from a trailing comment ``# exit N...``) and what the
    docs show it printing: the lines up to the next command or the block's end."""
    in_console = False
    command: tuple[str, int] | None = None
    shown: list[str] = []
    for line in DOCS.read_text().splitlines():
        if in_console and command is not None and (line.startswith("$ ") or line.startswith("```")):
            yield (*command, "\n".join(shown))
            command, shown = None, []
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if in_console and line.startswith("$ "):
            match = re.search(r"#\s*exit (\d+)\b", line)
            command = (line[2:], int(match.group(1)) if match else 0)
        elif in_console and command is not None:
            shown.append(line)


# What differs from run to run, and so is compared by its shape only: the
# docs show real values (an id, "2 seconds ago", 412KiB), the test accepts any.
_VARYING = [
    (re.compile(r"\bpx-[0-9a-f]{10}\b"), "px-<id>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( [+-]\d{4} \w+)?"), "<time>"),
    (re.compile(r"(Less than a second|About an? (minute|hour)|\d+ (second|minute|hour|day)s?)( ago)?"),
     "<age>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(B|kB|KB|MB|GB|KiB|MiB|GiB)\b"), "<size>"),
    (re.compile(r"\b\d+(\.\d+)?%"), "<pct>"),
    (re.compile(r"\b\d+\.\d+(ms|s)\b"), "<dur>"),
    (re.compile(r"\b\d\d:\d\d\b"), "<clock>"),
    (re.compile(r"\b\d+\.\d+\b|\b\d{3,}\b"), "<num>"),  # (pids, sizes in bytes, epoch times)
]


def shape(text: str) -> str:
    """``text`` with what varies between runs replaced by its kind, each line
    stripped and its runs of spaces made one (a table's columns widen with
    their values)."""
    for pattern, kind in _VARYING:
        text = pattern.sub(kind, text)
    return "\n".join(re.sub(r" {2,}", " ", line.strip()) for line in text.strip("\n").splitlines())


def as_user(text: str, root: Path, work: Path) -> str:
    """``text`` as a user at /home/me/work with the store at the default root sees it."""
    return text.replace(str(root), "/var/lib/pylxcore").replace(str(work), "/home/me/work")


def shows(shown: str, out: str, err: str) -> bool:
    """Whether the docs' ``shown`` lines are what a terminal showed of ``out``
    and ``err``: their lines, each stream's in its order (a terminal may
    interleave the two either way); "..." in ``shown`` stands for any text."""
    want, got_out, got_err = shape(shown), shape(out), shape(err)
    if "..." in want:
        both = ("\n".join(filter(None, pair)) for pair in ((got_out, got_err), (got_err, got_out)))
        return any(matches(want, text) for text in both)
    lines, a, b = (text.split("\n") if text else [] for text in (want, got_out, got_err))
    if len(lines) != len(a) + len(b):
        return False
    # An interleaving of a and b: walk the shown lines, taking from whichever stream fits.
    reachable = {(0, 0)}
    for line in lines:
        reachable = {(i + 1, j) for i, j in reachable if i < len(a) and a[i] == line} | {
            (i, j + 1) for i, j in reachable if j < len(b) and b[j] == line
        }
    return (len(a), len(b)) in reachable


def doc_yaml() -> str:
    """The first ```yaml block of the docs: the demo image."""
    text = DOCS.read_text()
    match = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert match, "docs/cli.md has no yaml block"
    return match.group(1)


def test_docs_walkthrough(engine: Engine, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "demo").mkdir(parents=True)
    (work / "demo" / "image.yaml").write_text(doc_yaml())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pylxcore").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pylxcore "$@"\n')
    (bindir / "pylxcore").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYLXCORE_ROOT": str(engine.root)}
    commands = list(doc_commands())
    assert len(commands) >= 30
    documented = {shlex.split(c, comments=True)[1] for c, _, _ in commands if c.startswith("pylxcore ")}
    for name in ("build", "run", "ps", "exec", "logs", "start", "stop", "restart", "kill", "rm", "images",
                 "rmi", "tag", "inspect", "prune", "stats", "completion", "save", "load", "export"):
        assert name in documented, f"docs/cli.md has no example of {name}"
    wrong = []
    for command, expected, shown in commands:
        proc = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == expected, f"{command!r}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        if not shows(shown, as_user(proc.stdout, engine.root, work), as_user(proc.stderr, engine.root, work)):
            printed = as_user(proc.stdout + proc.stderr, engine.root, work)
            wrong.append(f"$ {command}\n--- the docs show:\n{shown}\n--- it printed:\n{printed}")
    assert not wrong, "\n".join(wrong)
    assert engine.containers.list(all=True) == [], "the walkthrough should clean up after itself"


def test_docs_cover_every_command_and_option() -> None:
    text = DOCS.read_text()
    parser = build_parser()
    for name, sub in parser.commands.items():
        assert f"## {name}" in text or re.search(rf"^## .*\b{name}\b", text, re.M), f"no section for {name}"
        for action in sub.arguments:
            for option in action.option_strings:
                if option in ("-h", "--help", "--root", "--debug"):
                    continue  # --help everywhere; the copies of the global options are documented once
                pattern = rf"(?<![\w-]){re.escape(option)}(?![\w-])"
                assert re.search(pattern, text), f"{name} {option} undocumented"
    for option in ("--root", "--debug", "--version", "--help"):
        assert f"`{option}" in text
