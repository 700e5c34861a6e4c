"""Named volumes: engine.volumes, Mount(volume=...), -v NAME:/path and the volume commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pylxcore import Engine
from pylxcore.errors import Conflict, SpecError, VolumeNotFound
from pylxcore.spec import Mount

REPO = Path(__file__).resolve().parent.parent


def cli(engine: Engine, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylxcore", "--root", str(engine.store.root), *args],
                          input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def test_mount_values() -> None:
    assert Mount(volume="data", target="/data").volume == "data"
    with pytest.raises(SpecError, match="mount.source"):
        Mount(target="/data")
    with pytest.raises(SpecError, match="mount.volume"):
        Mount(volume="../etc", target="/data")


def test_data_outlives_containers(engine: Engine, busybox: str) -> None:
    volume = engine.volumes.create("data", labels={"team": "a"})
    assert engine.volumes.create("data") == volume  # as docker: an existing one is kept
    mount = Mount(volume="data", target="/data")
    result = engine.containers.run(busybox, ["sh", "-c", "echo kept > /data/f"], mounts=[mount], name="w1")
    assert result.exit_code == 0
    assert engine.volumes.users("data") == ["w1"]
    with pytest.raises(Conflict, match="w1"):
        engine.volumes.remove("data")
    with pytest.raises(Conflict):
        engine.volumes.remove("data", force=True)  # in use: not even with force, as docker
    engine.containers.get("w1").remove()
    read_only = Mount(volume="data", target="/mnt", read_only=True)
    out = engine.containers.run(busybox, ["sh", "-c", "cat /mnt/f; touch /mnt/x"], mounts=[read_only],
                                remove=True)
    assert out.stdout == b"kept\n" and out.exit_code == 1
    # A volume a mount names is made then, with what the image has there.
    engine.containers.run(busybox, ["true"], mounts=[Mount(volume="fresh", target="/data")], remove=True)
    assert (engine.volumes.get("fresh").mountpoint / "base").read_text() == "base\n"
    assert [v.name for v in engine.volumes.list()] == ["data", "fresh"]
    assert engine.volumes.get("data").inspect()["Labels"] == {"team": "a"}
    removed, _ = engine.volumes.prune()
    assert removed == ["data", "fresh"] and engine.volumes.list() == []
    with pytest.raises(VolumeNotFound):
        engine.volumes.get("data")
    engine.volumes.remove("data", force=True)  # gone: no error with force


def test_volume_commands(engine: Engine, busybox: str) -> None:
    assert cli(engine, "volume", "create", "--label", "k=v", "v1").stdout == "v1\n"
    assert cli(engine, "run", "--rm", "-v", "v1:/v", busybox, "sh", "-c", "echo hi > /v/a").returncode == 0
    assert cli(engine, "run", "-d", "--name", "user", "-v", "v2:/w:ro", busybox).returncode == 0
    assert cli(engine, "volume", "ls").stdout == "DRIVER    VOLUME NAME\nlocal     v1\nlocal     v2\n"
    assert cli(engine, "volume", "ls", "-q", "--filter", "dangling=true").stdout == "v1\n"
    assert cli(engine, "volume", "ls", "--filter", "label=k=v", "--format", "{{.Name}}").stdout == "v1\n"
    inspected = cli(engine, "volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Labels.k}}", "v1")
    assert inspected.stdout == "v1 local v\n"
    in_use = cli(engine, "volume", "rm", "v2")
    assert in_use.returncode == 1 and "in use by container(s) user" in in_use.stderr
    assert "Local Volumes   2       1" in cli(engine, "system", "df").stdout
    pruned = cli(engine, "volume", "prune", "-f")
    assert "Deleted Volumes:\nv1\n" in pruned.stdout
    assert cli(engine, "volume", "ls", "-q").stdout == "v2\n"
    assert cli(engine, "rm", "-f", "user").returncode == 0
    out = cli(engine, "system", "prune", "--volumes", "-f").stdout
    assert "Deleted Volumes:\nv2\n" in out
    assert cli(engine, "volume", "rm", "nosuch").returncode == 1


def test_a_user_namespaced_container_owns_its_new_volume(engine: Engine, busybox: str) -> None:
    mount = Mount(volume="uv", target="/data")
    script = "cat /data/base && echo w > /data/w && stat -c %u /data"
    out = engine.containers.run(busybox, ["sh", "-c", script], mounts=[mount], userns=True, remove=True)
    assert (out.exit_code, out.stdout) == (0, b"base\n0\n")
    assert (engine.volumes.get("uv").mountpoint / "w").stat().st_uid != 0  # a host id of its range
