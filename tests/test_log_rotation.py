"""Container logs are bounded on disk by default (SPEC.md §7): they rotate
like Docker's json-file driver, and every way of reading them (logs, tail,
log_entries, run's result, follow) reads across the rotated files, in order,
each record once."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest

from pylxcore import Engine, SpecError
from pylxcore.cli import main
from pylxcore.runtime.container import Container
from pylxcore.runtime.logs import LogCursor
from pylxcore.runtime.provision import DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE
from pylxcore.supervisor.logfile import RECORD, LogWriter


def log_files(c: Container) -> dict[str, Path]:
    return {p.name: p for p in c.dir.iterdir() if p.name == "log" or p.name.startswith("log.")}


def whole_records(path: Path) -> int:
    """The number of records in one log file, which must hold whole ones only."""
    data = path.read_bytes()
    pos = count = 0
    while pos < len(data):
        _, stream, length = RECORD.unpack_from(data, pos)
        assert stream in (1, 2)
        pos += RECORD.size + length
        count += 1
    assert pos == len(data), f"{path.name} ends inside a record"
    return count


def counter(n: int) -> list[str]:
    """A shell command printing 0..n-1, one line (and one write) each."""
    return ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do echo $i; i=$((i+1)); done"]


def numbers(n: int) -> bytes:
    return b"".join(b"%d\n" % i for i in range(n))


def test_95_mb_of_output_keep_3_mb_on_disk(engine: Engine, busybox: str) -> None:
    line = "x" * 99
    script = f"yes {line} | head -n 950000; for i in 1 2 3 4 5 6; do echo last$i; done"
    c = engine.containers.run(
        busybox, ["sh", "-c", script], detach=True, log_max_size="1M", log_max_files=3
    )
    assert c.wait(timeout=300) == 0
    files = log_files(c)
    assert sorted(files) == ["log", "log.1", "log.2"]
    on_disk = sum(p.stat().st_size for p in files.values())
    assert 2 << 20 < on_disk <= 3 << 20, on_disk
    for p in files.values():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        whole_records(p)
    assert c.logs(tail=5) == b"".join(b"last%d\n" % i for i in range(2, 7))
    kept = c.logs()
    assert kept.endswith(b"last6\n") and 2 << 20 < len(kept) < 3 << 20
    assert set(kept.splitlines()[1:-6]) == {line.encode()}, "whole lines, in order"


def test_every_reader_reads_across_rotations(engine: Engine, busybox: str) -> None:
    # 8 kB files, and enough of them that nothing is rotated away.
    result = engine.containers.run(
        busybox, counter(20000), name="many", log_max_size="8k", log_max_files=100
    )
    assert result == (0, numbers(20000), b"")
    c = engine.containers.get("many")
    files = log_files(c)
    assert len(files) > 10 and "log.100" not in files
    assert sum(whole_records(p) for p in files.values()) == len(c.log_entries())
    for p in files.values():
        assert p.stat().st_size <= 8 << 10 or whole_records(p) == 1
    assert c.logs() == numbers(20000)
    assert c.logs(tail=3) == b"19997\n19998\n19999\n"
    times = [e.time for e in c.log_entries()]
    assert times == sorted(times)
    assert b"".join(c.logs(follow=True, timeout=30)) == numbers(20000)  # exited: reads it all, ends


@pytest.mark.parametrize("max_files", [100, 2, 1])
def test_follow_loses_nothing_and_repeats_nothing_while_the_log_rotates(
    engine: Engine, busybox: str, max_files: int
) -> None:
    n = 60000
    c = engine.containers.run(busybox, counter(n), detach=True, log_max_size="16k", log_max_files=max_files)
    got = b"".join(c.logs(follow=True, timeout=120))
    assert c.wait(timeout=30) == 0
    if max_files == 100:
        # ~350 kB in 16 kB files: all of it is kept, so all of it must come, once.
        assert len(log_files(c)) > 20
        assert got == numbers(n)
        return
    assert len(log_files(c)) == max_files
    # With little kept, a reader that falls behind loses what was rotated away
    # (as with Docker), but never repeats a line nor puts one out of order.
    seen = [int(x) for x in got.splitlines()]
    assert seen == sorted(set(seen)), "in order, each once"
    assert seen[-1] == n - 1 and c.logs().endswith(b"%d\n" % (n - 1))
    assert set(c.logs().splitlines()) <= set(got.splitlines())


def test_the_cap_is_recorded_with_a_default(engine: Engine, busybox: str) -> None:
    c = engine.containers.create(busybox, ["true"], name="default")
    meta = json.loads((c.dir / "meta.json").read_text())
    assert (meta["log_max_size"], meta["log_max_files"]) == (DEFAULT_LOG_MAX_SIZE, DEFAULT_LOG_MAX_FILES)
    assert (DEFAULT_LOG_MAX_SIZE, DEFAULT_LOG_MAX_FILES) == (10 << 20, 3)
    c = engine.containers.create(busybox, ["true"], name="uncapped", log_max_size=-1, log_max_files=1)
    meta = json.loads((c.dir / "meta.json").read_text())
    assert (meta["log_max_size"], meta["log_max_files"]) == (-1, 1)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"log_max_size": "ten megs"}, "log_max_size"),
        ({"log_max_size": 0}, "log_max_size"),
        ({"log_max_size": True}, "log_max_size"),
        ({"log_max_files": 0}, "log_max_files"),
        ({"log_max_files": 101}, "log_max_files"),
        ({"log_max_files": "3"}, "log_max_files"),
    ],
)
def test_bad_log_options(engine: Engine, busybox: str, options: dict[str, object], key: str) -> None:
    with pytest.raises(SpecError) as info:
        engine.containers.run(busybox, ["true"], name="bad", **options)  # type: ignore[arg-type]
    assert info.value.key == key
    assert not engine.containers.exists("bad")


def test_the_cli_takes_docker_log_opts(
    engine: Engine, busybox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(engine.root)
    options = ["--log-opt", "max-size=1m", "--log-opt", "max-file=2"]
    assert main(["--root", root, "run", "-d", "--name", "opts", *options, busybox, "true"]) == 0
    meta = json.loads((engine.containers.get("opts").dir / "meta.json").read_text())
    assert (meta["log_max_size"], meta["log_max_files"]) == (1 << 20, 2)
    capsys.readouterr()
    assert main(["--root", root, "run", "--log-opt", "max-age=3d", busybox, "true"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("pylxcore: error: ") and "max-size" in err, err


def test_the_cursor_against_the_supervisors_log(tmp_path: Path) -> None:
    """LogWriter writes, LogCursor reads, interleaved at chosen points (no LXC)."""
    log = LogWriter(str(tmp_path), max_size=100, max_files=3)
    written: list[bytes] = []

    def write(n: int) -> None:
        for _ in range(n):
            data = b"%04d\n" % len(written)  # 5 bytes: 18 a record, 5 records a file
            written.append(data)
            log.write(1, data)

    cursor = LogCursor(tmp_path)
    read: list[bytes] = []

    def take() -> list[bytes]:
        new = [e.data for e in cursor.read()]
        read.extend(new)
        return new

    try:
        assert take() == []
        write(3)
        assert take() == written[:3]  # mid-file
        write(4)  # one rotation: the cursor's file is log.1 now
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("log")) == ["log", "log.1"]
        assert take() == written[3:7]
        write(12)  # several rotations; the cursor's file still has a name (log.2)
        assert take() == written[7:19]
        assert take() == []
        write(30)  # falls 6 files behind, 3 are kept: the rest is gone
        new = take()
        # The rest of the file it had open (rotated away, still readable), then the 3 kept.
        assert new[0] == written[19] and new[1:] == written[-len(new) + 1 :] and 10 < len(new) < 17
        assert read == sorted(set(read)), "in order, each once"
        # A reader looking at the names holds the rotation off: never the writer.
        lock = os.open(tmp_path, os.O_RDONLY)
        fcntl.flock(lock, fcntl.LOCK_SH)
        before = whole_records(tmp_path / "log")
        write(10)
        assert whole_records(tmp_path / "log") == before + 10, "not rotated while locked"
        os.close(lock)
        write(1)
        assert whole_records(tmp_path / "log") == 1
        assert take() == written[-11:]
    finally:
        cursor.close()
        log.close()
