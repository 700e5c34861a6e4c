"""``Container.rename`` in every state (SPEC.md section 11, issue #16): a
container's key (its dir, liblxc name, cgroups, lock) stays, its name
changes; everything finds it by the new name at once, in this process and
the next; a name freed by a rename is used again; a rename killed at any
point leaves one of its names working and ``check()`` repairs the rest.
The Docker differential is in tests/test_parity_docker.py."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import pytest

from pylxcore import Engine
from pylxcore.errors import Conflict, ContainerNotFound, SpecError, StorageError
from pylxcore.runtime import names
from pylxcore.runtime.container import Container
from pylxcore.store.records import ContainerRecord
from tests.conftest import until
from tests.netutil import build_web, net_engine, serve

__all__ = ["net_engine"]  # (the fixture, imported to be found)


def test_running_rename_everything_follows(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sh", "-c", "echo hello; exec sleep 3600"], name="r1", detach=True)
    key, cid = c.key, c.id
    engine.containers.get("r1").rename("r2")
    # A fresh lookup says the new name; it still runs, in place.
    r2 = engine.containers.get("r2")
    assert (r2.name, r2.id, r2.key, r2.status()) == ("r2", cid, key, "running")
    assert r2.dir == engine.store.containers_dir / "r1"  # the dir never moves
    with pytest.raises(ContainerNotFound):
        engine.containers.get("r1")
    assert [x.name for x in engine.containers.list()] == ["r2"]
    assert engine.containers.get(cid[:8]).name == "r2"
    assert r2.inspect()["name"] == "r2"
    assert r2.exec(["hostname"]).stdout == b"r1\n"  # docker keeps the hostname too
    assert r2.inspect()["hostname"] == "r1" and r2.exec(["sh", "-c", "echo $HOSTNAME"]).stdout == b"r1\n"
    assert r2.exec(["echo", "in"]).stdout == b"in\n"
    assert b"hello" in r2.logs()
    assert c.inspect()["name"] == "r2"  # the old handle follows (by its key)
    renamed = [e for e in engine.events(filters={"container": cid}) if e.action == "rename"]
    assert len(renamed) == 1 and renamed[0].name == "r2"
    # The next process finds it by its new name only.
    again = Engine(root=engine.root)
    r2b = again.containers.get("r2")
    assert r2b.status() == "running" and r2b.exec(["true"]).exit_code == 0
    assert not again.containers.exists("r1")
    r2b.stop(timeout=1)
    dies = [e for e in again.events(filters={"container": "r2", "event": "die"})]
    assert dies and dies[-1].name == "r2"  # its supervisor says the new name too
    assert r2b.status() == "exited"
    r2b.rename("r3")  # and stopped: the same path
    again.containers.get("r3").start()
    assert engine.containers.get("r3").exec(["true"]).exit_code == 0
    engine.containers.get("r3").remove(force=True)
    assert engine.containers.list(all=True) == [] and names.entries(engine.store) == {}
    assert engine.check().consistent


def test_name_reuse_and_errors(engine: Engine, busybox: str) -> None:
    first = engine.containers.run(busybox, name="web", detach=True)
    first.rename("old-web")
    # The freed name is taken again while the renamed one still sits in containers/web.
    second = engine.containers.run(busybox, name="web", detach=True)
    assert second.key != "web" and second.key.startswith("web-")
    assert second.exec(["hostname"]).stdout == b"web\n"
    assert names.entries(engine.store) == {"web": second.key, "old-web": "web"}
    again = Engine(root=engine.root)
    assert again.containers.get("web").id == second.id
    assert again.containers.get("old-web").id == first.id
    # check() puts back an entry that is gone, removes one that leads nowhere.
    (engine.root / "names" / "web").unlink()
    (engine.root / "names" / "ghost").symlink_to("nosuch")
    assert not engine.containers.exists("web")
    report = engine.check()
    assert sorted(report.repaired) == ["removed stale name index entry ghost -> nosuch",
                                       f"restored name index entry web -> {second.key}"], report
    assert engine.containers.get("web").id == second.id and engine.check().repaired == ()
    with pytest.raises(Conflict, match="'web'"):
        first.rename("web")
    with pytest.raises(Conflict, match="'web'"):
        engine.containers.create(busybox, name="web")
    with pytest.raises(SpecError):
        first.rename("bad name!")
    with pytest.raises(SpecError):
        first.rename("a..b")
    first.rename("old-web")  # its own name: nothing to do
    # Back and forth; the one under a suffixed key is renamed like any other.
    second.rename("web2")
    first.rename("web")
    assert names.entries(engine.store) == {"web2": second.key}
    assert {c.name for c in again.containers.list()} == {"web", "web2"}
    again.containers.get("web2").remove(force=True)
    assert names.entries(engine.store) == {}
    gone = engine.containers.get("web")
    gone.remove(force=True)
    with pytest.raises(ContainerNotFound):
        gone.rename("anything")
    with pytest.raises(ContainerNotFound):
        engine.containers.get("web")
    assert engine.check().consistent


def test_the_record_keeps_its_key(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    old = {"id": "a" * 64, "name": "web", "image": "x:1", "image_id": "sha256:" + "b" * 64, "command": ["sh"]}
    rec = ContainerRecord.from_json(old, path)  # written before keys: its key is its name
    assert rec.key == "web" and rec.to_json()["schema"] == 1 and rec.to_json()["key"] == "web"
    renamed = attrs.evolve(rec, name="site")
    data = renamed.to_json()
    # A key that is not the name: schema 2, which an older pylxcore refuses rather than misreads.
    assert (data["schema"], data["key"], data["name"]) == (2, "web", "site")
    assert ContainerRecord.from_json(data, path) == renamed
    with pytest.raises(StorageError, match="schema 3"):
        ContainerRecord.from_json({**data, "schema": 3}, path)


def test_an_older_stores_container_is_renamed(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, name="before", detach=True)
    meta = c.dir / "meta.json"
    data = json.loads(meta.read_text())
    del data["key"]
    meta.write_text(json.dumps({**data, "schema": 1}))  # as an older pylxcore wrote it
    again = Engine(root=engine.root)
    again.containers.get("before").rename("after")
    assert json.loads(meta.read_text())["key"] == "before"
    assert Engine(root=engine.root).containers.get("after").exec(["true"]).exit_code == 0


def test_one_name_one_container_under_races(engine: Engine, busybox: str) -> None:
    # Three renames and a create race for one name, each in an engine of its own:
    # one wins, the others are told it is taken.
    for i in range(3):
        engine.containers.create(busybox, name=f"c{i}")
    outcomes: list[str] = []

    def contend(i: int) -> None:
        mine = Engine(root=engine.root)
        try:
            if i < 3:
                mine.containers.get(f"c{i}").rename("prize")
            else:
                mine.containers.create(busybox, name="prize")
            outcomes.append("won")
        except Conflict:
            outcomes.append("taken")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["taken", "taken", "taken", "won"]
    assert engine.containers.get("prize") and len(engine.containers.list(all=True)) in (3, 4)
    assert len({c.name for c in engine.containers.list(all=True)}) == len(engine.containers.list(all=True))
    assert engine.check().consistent


def test_running_rename_on_a_network_answers_by_the_new_name(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    engine.networks.create("renamenet")
    web = engine.containers.run(image, serve("hi"), name="web", detach=True, network="renamenet",
                                aliases=["www"])
    client = engine.containers.run(image, name="client", detach=True, network="renamenet")

    def page(host: str) -> bytes:
        return _page(client, host)

    assert until(lambda: page("web"), what="the web server") == b"hi"
    web.rename("site")
    assert page("site") == b"hi" and page("www") == b"hi"
    assert client.exec(["nslookup", "web"]).exit_code != 0
    net = engine.networks.get("renamenet")
    assert net.containers == ("client", "site") and set(net.inspect()["containers"]) == {"client", "site"}
    # A new "web" on the network answers to that name; the renamed one still to its new one.
    engine.containers.run(image, serve("new"), name="web", detach=True, network="renamenet")
    assert until(lambda: page("web"), what="the new web server") == b"new" and page("site") == b"hi"
    # Connect and disconnect find it by its new name (its place is its key's).
    engine.networks.create("second")
    engine.networks.get("second").connect("site")
    engine.networks.get("second").disconnect("site")
    assert page("site") == b"hi"
    assert engine.check().consistent


def _page(client: Container, host: str) -> bytes:
    """The page at http://HOST/ from ``client``; b"" when none answers."""
    # (busybox's timeout applet: this static busybox's own wget -T crashes)
    return client.exec(["timeout", "3", "wget", "-q", "-O", "-", f"http://{host}/"]).stdout.strip()


RENAMER = """
import sys
from pylxcore import Engine
engine = Engine(root=sys.argv[1])
c = engine.containers.get(sys.argv[2])
names = sys.argv[2:4]
print("go", flush=True)
i = 0
while True:
    c.rename(names[i % 2 == 0])
    i += 1
"""


def test_sigkill_mid_rename_then_check(net_engine: Engine) -> None:
    engine = net_engine
    image = build_web(engine)
    engine.networks.create("crashnet")
    # One container under its name as key, one under a suffixed key (its name was reused).
    engine.containers.run(image, serve("one"), name="one", detach=True, network="crashnet")
    engine.containers.get("one").rename("parked")
    engine.containers.run(image, serve("two"), name="one", detach=True, network="crashnet")
    client = engine.containers.run(image, name="client", detach=True, network="crashnet")
    until(lambda: _page(client, "one") and _page(client, "parked"), what="the web servers")
    rng = random.Random(16)
    repaired: list[str] = []
    for pair, page in ((("parked", "other"), b"one"), (("one", "uno"), b"two")):
        for _ in range(4):
            start = next(n for n in pair if engine.containers.exists(n))
            proc = subprocess.Popen([sys.executable, "-c", RENAMER, str(engine.root), start,
                                     pair[1] if start == pair[0] else pair[0]],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline() == "go\n"
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # One of its names works, never neither nor both.
            found = [n for n in pair if engine.containers.exists(n)]
            assert len(found) == 1, found
            repaired += engine.check().repaired
            assert engine.check().consistent
            c = engine.containers.get(found[0])
            assert c.status() == "running"
            got = _page(client, found[0])
            assert got == page, (found, got)
            other = pair[1] if found[0] == pair[0] else pair[0]
            assert client.exec(["nslookup", other]).exit_code != 0
    assert len(engine.containers.list()) == 3
    assert repaired  # (the kills did land mid-rename: there was something to repair)
