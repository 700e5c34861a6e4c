"""``engine.events()`` and ``events`` (SPEC.md section 10): what happens to
containers, recorded in the store by whoever caused it (the library or the
container's supervisor) as it happens, read back in order, filtered, and
followed."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time

import pytest

from pylxcore import Engine
from pylxcore.errors import SpecError
from pylxcore.runtime.events import Event


def script(engine: Engine, image: str) -> str:
    """A scripted life: run, exec, stop, start, kill, remove."""
    c = engine.containers.run(image, ["sleep", "300"], detach=True)
    c.exec(["true"])
    c.stop(timeout=5)
    c.start()
    c.kill()
    c.wait(timeout=10)
    c.remove()
    return str(c.name)


EXPECTED = [
    ("create", {}),
    ("start", {}),
    ("exec_start: true", {}),
    ("kill", {"signal": "15"}),
    ("die", {"exitCode": "143"}),
    ("stop", {}),
    ("start", {}),
    ("kill", {"signal": "9"}),
    ("die", {"exitCode": "137"}),
    ("destroy", {}),
]


def test_a_scripted_life_gives_exactly_its_events_in_order(engine: Engine, busybox: str) -> None:
    before = time.time()
    followed: list[Event] = []

    def follow() -> None:
        for event in engine.events(since=before, until=time.time() + 60, follow=True):
            followed.append(event)
            if event.action == "destroy":
                return

    follower = threading.Thread(target=follow)
    follower.start()
    name = script(engine, busybox)
    follower.join(timeout=60)
    assert not follower.is_alive()
    read = list(engine.events(since=before))
    for events in (read, followed):
        assert [
            (e.action, {k: v for k, v in e.attributes.items() if k != "execID"}) for e in events
        ] == EXPECTED
        assert len(events[2].attributes["execID"]) == 64
        assert {(e.name, e.image, e.type) for e in events} == {(name, busybox, "container")}
        assert [e.time for e in events] == sorted(e.time for e in events)
    # Filters: Docker's keys, any value of one key, every key.
    dies = list(engine.events(filters={"container": name, "event": ["die", "destroy", "exec_start"]}))
    assert [e.action for e in dies] == ["exec_start: true", "die", "die", "destroy"]
    assert list(engine.events(filters={"container": "someone-else"})) == []
    assert list(engine.events(until=before)) == []
    assert [e.action for e in engine.events(since=read[-1].time)] == ["destroy"]
    with pytest.raises(SpecError):
        list(engine.events(filters={"colour": "red"}))


def test_the_command_line_prints_them_and_follows(engine: Engine, busybox: str) -> None:
    env = {**os.environ, "PYLXCORE_ROOT": str(engine.root)}
    cli = [sys.executable, "-m", "pylxcore"]
    follower = subprocess.Popen([*cli, "events", "--format", "json", "--filter", "event=die"],
                                stdout=subprocess.PIPE, env=env)  # fmt: skip
    try:
        time.sleep(1)  # (let it start)
        out = subprocess.run([*cli, "run", "--restart", "on-failure:1", busybox, "sh", "-c", "exit 4"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert out.returncode == 4, out.stderr
        assert follower.stdout is not None
        shown = b""
        while shown.count(b"\n") < 2:  # (as they come, never waiting for ever)
            assert select.select([follower.stdout], [], [], 30)[0], f"no more events after {shown!r}"
            shown += os.read(follower.stdout.fileno(), 65536)
        lines = [json.loads(line) for line in shown.splitlines()]
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    assert [(d["action"], d["attributes"]) for d in lines] == [("die", {"exitCode": "4"})] * 2
    since = str(lines[0]["time"] - 5)
    done = subprocess.run([*cli, "events", "--since", since, "--until", str(time.time())],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert [line.split()[2] for line in text.splitlines()] == ["create", "start", "die", "start", "die"]
    assert "exitCode=4" in text.splitlines()[2]
