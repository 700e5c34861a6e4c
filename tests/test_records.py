"""The store's typed documents (pylxcore.store.records, and the networks'
pylxcore.network.records): each round-trips,
the files of older roots (no ``schema``) still load, a newer schema is a
clear StorageError naming the file, and the supervisor's own state.json reads
back through StateRecord."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest

from pylxcore import Engine
from pylxcore.build import record
from pylxcore.errors import NetworkNotFound, StorageError
from pylxcore.network import records as net_records
from pylxcore.network.records import EndpointRecord, NetworkRecord
from pylxcore.runtime.state import StateRecord
from pylxcore.spec import Limits, Mount
from pylxcore.store import Store
from pylxcore.store.records import (
    ContainerRecord,
    HistoryStep,
    ImageRecord,
    LayerOrigin,
    LayerRecord,
    Refs,
)
from pylxcore.supervisor import state as supervisor_state
from tests.conftest import until

# What pylxcore wrote before its documents had a schema (copied from real files).
OLD_LAYER = {
    "version": 1,
    "key": "sha256:" + "a" * 64,
    "parent": None,
    "instruction": "FROM busybox",
    "size": 4096,
    "created": 1700000000.5,
    "short": "a" * 12,
}
OLD_IMAGE = {
    "id": "sha256:" + "b" * 64,
    "layers": ["sha256:" + "a" * 64],
    "chain": "sha256:" + "c" * 64,
    "config": {"env": {"A": "1"}, "workdir": "/", "user": "root", "cmd": ["sh"], "labels": {}, "limits": {}},
    "history": [
        {"instruction": "FROM busybox", "key": "sha256:" + "a" * 64},
        {"instruction": "ENV A=1", "key": "sha256:" + "c" * 64},
    ],
    "base": "busybox",
    "created": 1700000001.25,
}
OLD_REFS = {"web:latest": "sha256:" + "b" * 64, "web:1": "sha256:" + "b" * 64}
OLD_CONTAINER = {
    "id": "d" * 64,
    "name": "web1",
    "image": "web",
    "image_id": "sha256:" + "b" * 64,
    "layers": ["sha256:" + "a" * 64],
    "command": ["sleep", "1"],
    "env": {"A": "1"},
    "workdir": "/",
    "user": "root",
    "uid": 0,
    "gid": 0,
    "network": "none",
    "limits": {"memory": "64M", "pids": 10},
    "mounts": [{"source": "/srv", "target": "/data", "read_only": True}],
    "labels": {"k": "v"},
    "userns": False,
    "created": 1700000002.0,
}
# A container made before logs rotated, labels and userns: fewer fields still.
OLDER_CONTAINER = {k: v for k, v in OLD_CONTAINER.items() if k not in ("labels", "userns")}
OLD_STATE = {
    "status": "exited",
    "shim_pid": 12,
    "shim_start": 34,
    "lxc_pid": 13,
    "init_pid": 14,
    "main_pid": 15,
    "started_at": 1700000003.0,
    "finished_at": 1700000004.0,
    "exit_code": 137,
    "oom_killed": True,
}


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# -- round trips -------------------------------------------------------------------


def test_every_record_round_trips(tmp_path: Path) -> None:
    layer_path = tmp_path / "layers" / ("a" * 64) / "meta.json"
    layer = LayerRecord(
        "sha256:" + "a" * 64, None, "RUN x", 10, 1.5, layer_path.parent / "fs", "a" * 12,
        origin=LayerOrigin("sha256:" + "e" * 64, "sha256:" + "f" * 64, "application/x", 99),
    )  # fmt: skip
    assert LayerRecord.from_json(layer.to_json(), layer_path, key=layer.key) == layer

    image = ImageRecord(
        id="sha256:" + "b" * 64,
        layers=("sha256:" + "a" * 64,),
        chain="sha256:" + "a" * 64,
        config={"env": {}, "cmd": None, "anything": ["a field ImageConfig adds flows through"]},
        history=(HistoryStep("FROM x", "sha256:" + "a" * 64, oci={"created_by": "x"}),),
        base="import",
        created=2.5,
        origin={"author": "me"},
    )
    assert ImageRecord.from_json(image.to_json(), tmp_path / "i.json") == image

    refs = Refs({"web:latest": "sha256:" + "b" * 64})
    assert Refs.from_json(refs.to_json(), tmp_path / "refs.json") == refs

    container = ContainerRecord.from_json(OLD_CONTAINER, tmp_path / "meta.json")
    container = attrs.evolve(
        container,
        log_max_size=1 << 20,
        log_max_files=2,
        restart="on-failure:3",
        healthcheck={"test": ["CMD", "true"]},
        extra={"networks": {"front": {"ip": "10.0.0.2"}}},
    )
    data = container.to_json()
    assert data["networks"] == {"front": {"ip": "10.0.0.2"}}  # a feature's own fields, kept as they were
    assert ContainerRecord.from_json(json.loads(json.dumps(data)), tmp_path / "meta.json") == container

    state = StateRecord("running", shim_pid=1, shim_start=2, lxc_pid=3, started_at=4.0, restart_count=1)
    assert StateRecord.from_json(state.to_json(), tmp_path / "state.json") == state
    state.write(tmp_path / "state.json")  # through the supervisor's own writer
    assert StateRecord.read(tmp_path / "state.json") == state


def test_the_store_reads_and_writes_through_the_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    staged = store.staging_dir("t")
    (staged / "fs").mkdir()
    (staged / "fs" / "f").write_text("x")
    key = "sha256:" + "1" * 64
    committed = store.commit_layer(key, staged / "fs", parent=None, instruction="RUN x")
    meta = json.loads((store.layer_dir(key) / "meta.json").read_text())
    assert meta["schema"] == 1 and meta["instruction"] == "RUN x"
    assert store.get_layer(key) == committed

    image = ImageRecord.from_json(OLD_IMAGE, tmp_path / "x.json")
    store.put_image(image)
    assert json.loads(store.image_path(image.id).read_text())["schema"] == 1
    assert store.get_image_record(image.id) == image
    assert store.get_image_record("sha256:" + "9" * 64) is None

    store.write_refs({"web:latest": image.id})
    assert json.loads(store.refs_path.read_text()) == {"schema": 1, "web:latest": image.id}
    assert store.read_refs() == {"web:latest": image.id}


def test_the_state_fields_are_the_supervisors() -> None:
    # One list of names: the supervisor's writer, and the record that reads it.
    assert tuple(f.name for f in attrs.fields(StateRecord)) == supervisor_state.FIELDS


# -- the files of older roots -----------------------------------------------------------


def test_files_without_a_schema_still_load(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    key = OLD_LAYER["key"]
    assert isinstance(key, str)
    _write(store.layer_dir(key) / "meta.json", OLD_LAYER)
    layer = store.get_layer(key)
    assert (layer.instruction, layer.size, layer.short) == ("FROM busybox", 4096, "a" * 12)
    assert layer.origin is None
    assert layer.path == store.layer_dir(key) / "fs"

    _write(store.image_path(str(OLD_IMAGE["id"])), OLD_IMAGE)
    image = store.get_image_record(str(OLD_IMAGE["id"]))
    assert image is not None
    assert image.config == OLD_IMAGE["config"]
    assert image.history[1] == HistoryStep("ENV A=1", "sha256:" + "c" * 64)
    assert (image.base, image.created, image.origin) == ("busybox", 1700000001.25, {})
    assert image.to_json() == {"schema": 1, **OLD_IMAGE}  # nothing lost on the way

    _write(store.refs_path, OLD_REFS)
    assert store.read_refs() == OLD_REFS

    old = ContainerRecord.from_json(OLD_CONTAINER, tmp_path / "meta.json")
    assert old.limits == Limits(memory="64M", pids=10)
    assert old.mounts == (Mount("/srv", "/data", read_only=True),)
    assert (old.log_max_size, old.restart, old.healthcheck, old.extra) == (None, "no", None, {})
    older = ContainerRecord.from_json(OLDER_CONTAINER, tmp_path / "meta.json")
    assert (older.labels, older.userns) == ({}, False)

    state = StateRecord.read(_write(tmp_path / "c" / "state.json", OLD_STATE))
    assert state == StateRecord(**OLD_STATE)  # type: ignore[arg-type]
    assert (state.restart_count, state.health) == (0, None)


# -- what cannot be read --------------------------------------------------------------------


def _newer(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "schema": 99}


def test_a_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    key = str(OLD_LAYER["key"])
    cases: list[tuple[Path, Callable[[], object]]] = [
        (_write(store.layer_dir(key) / "meta.json", _newer(OLD_LAYER)), lambda: store.get_layer(key)),
        (
            _write(store.image_path(str(OLD_IMAGE["id"])), _newer(OLD_IMAGE)),
            lambda: store.get_image_record(str(OLD_IMAGE["id"])),
        ),
        (_write(store.refs_path, _newer(OLD_REFS)), store.read_refs),
        (
            _write(tmp_path / "c" / "meta.json", _newer(OLD_CONTAINER)),
            lambda: ContainerRecord.read(tmp_path / "c" / "meta.json"),
        ),
        (
            _write(tmp_path / "c" / "state.json", _newer(OLD_STATE)),
            lambda: StateRecord.read(tmp_path / "c" / "state.json"),
        ),
    ]
    for path, read in cases:
        with pytest.raises(StorageError) as info:
            read()
        assert str(path) in str(info.value) and "schema 99" in str(info.value), info.value
        assert "newer" in str(info.value) and info.value.path == str(path)


def test_a_broken_record_names_its_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    image_id = str(OLD_IMAGE["id"])
    path = _write(store.image_path(image_id), {k: v for k, v in OLD_IMAGE.items() if k != "layers"})
    with pytest.raises(StorageError, match=r"field 'layers' is missing") as info:
        store.get_image_record(image_id)
    assert info.value.path == str(path)
    path.write_text("{not json")
    with pytest.raises(StorageError, match="unreadable") as info:
        store.get_image_record(image_id)
    assert info.value.path == str(path)
    _write(store.refs_path, ["not", "an", "object"])
    with pytest.raises(StorageError, match="not a JSON object"):
        store.read_refs()
    _write(store.refs_path, {"schema": "1"})
    with pytest.raises(StorageError, match="invalid schema"):
        store.read_refs()


def test_a_build_record_is_read_and_written_in_one_place(tmp_path: Path) -> None:
    inv = record.invocation(["build", "x"], {}, "/w")
    doc = record.document(invocation=inv, root="/r", image_id="sha256:1", facts=[], stdout="hi")
    path = tmp_path / "r.json"
    path.write_text(record.dumps(doc))
    assert record.load(str(path)) == doc and doc["schema"] == record.SCHEMA
    path.write_text(record.dumps({**doc, "schema": record.SCHEMA + 1}))
    assert record.load(str(path)) is None  # another schema: the real build runs
    path.write_text("{")
    assert record.load(str(path)) is None and record.load(str(tmp_path / "none")) is None


# -- with the real supervisor and an older root ---------------------------------------------


def test_a_supervisors_state_reads_through_the_record(engine: Engine, busybox: str) -> None:
    c = engine.containers.run(busybox, ["sleep", "30"], detach=True, name="st")
    path = c.dir / supervisor_state.STATE_FILE
    written = json.loads(path.read_text())
    assert written["schema"] == supervisor_state.SCHEMA
    assert set(written) - {"schema"} <= set(supervisor_state.FIELDS), "a field only the supervisor knows"
    running = StateRecord.read(path)
    assert running is not None and running.status == "running" and running.supervisor_alive()
    assert running.lxc_pid and running.main_pid and running.started_at
    c.kill("SIGKILL")
    assert c.wait(timeout=30) == 137
    until(lambda: json.loads(path.read_text())["status"] == "exited", what="the last word")
    assert set(json.loads(path.read_text())) - {"schema"} <= set(supervisor_state.FIELDS)
    exited = StateRecord.read(path)
    assert exited is not None
    assert (exited.status, exited.exit_code, exited.shim_pid) == ("exited", 137, running.shim_pid)
    assert exited.finished_at is not None and not exited.supervisor_alive()


def _strip_schemas(root: Path) -> int:
    """Rewrite every JSON document under ``root`` as an older pylxcore wrote it (no schema)."""
    n = 0
    for path in [root / "refs.json", *root.glob("images/*.json"), *root.glob("layers/*/meta.json"),
                 *root.glob("containers/*/meta.json"), *root.glob("containers/*/state.json")]:  # fmt: skip
        data = json.loads(path.read_text())
        del data["schema"]
        if path.parent.parent.name == "layers":
            data["version"] = 1
        path.write_text(json.dumps(data))
        n += 1
    return n


def test_an_older_root_keeps_working(engine: Engine, busybox: str) -> None:
    engine.containers.create(busybox, ["echo", "hi"], name="made-before")
    ran = engine.containers.run(busybox, ["true"], name="ran-before")
    assert ran.exit_code == 0
    assert _strip_schemas(engine.root) >= 6
    again = Engine(root=engine.root)
    image = again.images.get(busybox)
    assert image.config.cmd == ("sleep", "3600") and len(image.layer_keys) == 2
    assert again.containers.get("ran-before").status() == "exited"
    assert again.containers.get("ran-before").exit_code == 0
    made = again.containers.get("made-before")
    assert made.status() == "created"
    made.start()
    assert made.wait(timeout=30) == 0 and made.logs() == b"hi\n"
    assert again.containers.run(busybox, ["echo", "new"], remove=True).stdout == b"new\n"
    again.images.tag(busybox, "older:2")  # refs written back with a schema
    assert json.loads((engine.root / "refs.json").read_text())["schema"] == 1
    assert again.check().consistent


# -- network records (pylxcore.network.records) ------------------------------------------

# A network record as pylxcore wrote it before it had a schema.
OLD_NETWORK = {
    "name": "web",
    "id": "e" * 64,
    "bridge": "pxbabcde123456",
    "subnet": "10.88.0.0/24",
    "gateway": "10.88.0.1",
    "internal": False,
    "dns": True,
    "created": 1700000005.5,
    "dns_pid": 4242,
    "dns_start": 987654,
    "endpoints": {
        "a": {"ip": "10.88.0.2", "aliases": ["db"], "ports": [["80/tcp", "0.0.0.0", 8080]]},
        "b": {"ip": "10.88.0.3", "aliases": [], "ports": [], "owner": "123-456"},
    },
}


def test_a_network_record_round_trips_and_old_ones_load(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    # A reader makes nothing: a store that never had a network has no dir.
    assert net_records.load_all(store) == {}
    with pytest.raises(NetworkNotFound):
        net_records.load(store, "web")
    assert not (store.root / "networks").exists()

    path = _write(store.root / "networks" / "web.json", OLD_NETWORK)
    old = net_records.load(store, "web")
    assert (old.subnet, old.internal, old.dns) == ("10.88.0.0/24", False, True)
    assert (old.dns_pid, old.dns_start) == (4242, 987654)
    assert old.endpoints["a"] == EndpointRecord("10.88.0.2", ["db"], [["80/tcp", "0.0.0.0", 8080]])
    assert (old.endpoints["a"].owner, old.endpoints["b"].owner) == (None, "123-456")
    assert old.to_json() == {"schema": 1, **OLD_NETWORK}  # nothing lost on the way
    assert net_records.load_all(store) == {"web": old}

    old.endpoints["b"].owner = None
    old.endpoints["c"] = EndpointRecord("10.88.0.4", ports=[["53/udp", "127.0.0.1", 5353]])
    net_records.save(store, old)
    assert json.loads(path.read_text())["schema"] == 1
    assert "owner" not in json.loads(path.read_text())["endpoints"]["b"]
    assert net_records.load(store, "web") == old

    fresh = NetworkRecord("n", "f" * 64, "pxbx", "10.9.0.0/24", "10.9.0.1", True, False, 1.0)
    net_records.save(store, fresh)
    assert "dns_pid" not in json.loads((store.root / "networks" / "n.json").read_text())
    assert net_records.load(store, "n") == fresh


def test_a_newer_or_broken_network_record_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    path = _write(store.root / "networks" / "web.json", _newer(OLD_NETWORK))
    for read in (lambda: net_records.load(store, "web"), lambda: net_records.load_all(store)):
        with pytest.raises(StorageError) as info:
            read()
        assert str(path) in str(info.value) and "schema 99" in str(info.value), info.value
        assert "newer" in str(info.value) and info.value.path == str(path)
    _write(path, {k: v for k, v in OLD_NETWORK.items() if k != "subnet"})
    with pytest.raises(StorageError, match=r"field 'subnet' is missing") as info:
        net_records.load(store, "web")
    assert info.value.path == str(path)
    _write(path, {**OLD_NETWORK, "endpoints": {"a": {"ip": "10.88.0.2", "ports": [["80/tcp", 8080]]}}})
    with pytest.raises(StorageError, match="published ports"):
        net_records.load_all(store)
    path.write_text("{not json")
    with pytest.raises(StorageError, match="unreadable") as info:
        net_records.load(store, "web")
    assert info.value.path == str(path)
