"""Unit tests of pylxcore.spec: values, name rules, copy sources and the YAML form (no LXC needed)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import attrs
import pytest

from pylxcore.errors import SpecError
from pylxcore.spec import (
    Image,
    Layer,
    Limits,
    Mount,
    parse_size,
    resolve_copy_source,
    split_image_ref,
    validate_container_name,
    validate_image_ref,
)
from pylxcore.spec.sizes import compact_size, human_size

BAD_YAML = pathlib.Path(__file__).parent / "bad_yaml"

# --------------------------------------------------------------------------
# parse_size
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100", 100),
        ("100b", 100),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("64M", 64 << 20),
        ("64m", 64 << 20),
        ("64MiB", 64 << 20),
        ("64MB", 64 << 20),
        ("64mb", 64 << 20),
        ("1G", 1 << 30),
        ("1.5G", 3 << 29),
        ("2T", 2 << 40),
        (4096, 4096),
    ],
)
def test_parse_size_good(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "value",
    ["64Q", "", "-1", "0", "0M", "M", "64 M", " 64M", "1.1", "0.3k", "1e3", "6٤M", "99999999T",
     "1" * 5000, True, 0, -5, 1.5, None, 2**63],
)
def test_parse_size_bad(value: object) -> None:
    with pytest.raises(SpecError) as info:
        parse_size(value, key="limits.memory")  # type: ignore[arg-type]
    assert info.value.key == "limits.memory"
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("size", [1, 1000, 1023, 1024, 1536, 64 << 20, (1 << 40) + 1024, 5 << 50, 2**63 - 1])
def test_compact_size_reads_back_exactly(size: int) -> None:
    assert parse_size(compact_size(size)) == size


def test_sizes_for_specs_and_for_people() -> None:
    assert (compact_size(64 << 20), compact_size(3 << 30), compact_size(1536)) == ("64M", "3G", 1536)
    assert (human_size(0), human_size(999), human_size(2056192)) == ("0B", "999B", "2.056MB")
    assert human_size(64 << 20, binary=True) == "64MiB"
    assert human_size(1536, binary=True) == "1.5KiB"
    assert human_size(5 << 50, binary=True) == "5120TiB"


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "normalized"),
    [
        ("web", "web:latest"),
        ("web:1.0", "web:1.0"),
        ("my-app_2.x", "my-app_2.x:latest"),
        ("org/team/web:v1_RC-2", "org/team/web:v1_RC-2"),
        ("a" * 121 + ":latest", "a" * 121 + ":latest"),
        ("x:" + "T" * 126, "x:" + "T" * 126),
        ("1.0", "1.0:latest"),
        ("web:_", "web:_"),
    ],
)
def test_validate_image_ref_good(ref: str, normalized: str) -> None:
    assert validate_image_ref(ref) == normalized
    assert validate_image_ref(normalized) == normalized


@pytest.mark.parametrize(
    "ref",
    [
        "", ":", ":tag", "../x", "a/../b", "/abs", "abs/", "a//b", "Web", "web:1 0", "web app", "we\tb",
        "web\n", "wéb", "web:é", "a:b:c", "a:", "a" * 122 + ":latest", "x:" + "T" * 127, "web:.hidden",
        "web:-x", "web:a..b", "a..b", "a__b", "a-", "-a", ".a", "a.", "web:x/2", "web\x00", "web:1\x7f",
    ],
)
def test_validate_image_ref_bad(ref: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_image_ref(ref)
    assert info.value.key == "name"
    assert repr(ref)[:40] in str(info.value)


@pytest.mark.parametrize("ref", [None, 5, b"web", ["web"]])
def test_validate_image_ref_not_a_string(ref: object) -> None:
    with pytest.raises(TypeError):
        validate_image_ref(ref)  # type: ignore[arg-type]


def test_image_ref_messages_say_what_is_allowed() -> None:
    with pytest.raises(SpecError, match="lowercase letters and digits"):
        validate_image_ref("Web")
    with pytest.raises(SpecError, match="empty tag"):
        validate_image_ref("web:")


def test_split_image_ref() -> None:
    assert split_image_ref("web") == ("web", "latest")
    assert split_image_ref("org/web:1.0") == ("org/web", "1.0")


@pytest.mark.parametrize("name", ["web1", "W", "a" * 63, "my_app.v2-x", "0", "Web-Server"])
def test_validate_container_name_good(name: str) -> None:
    assert validate_container_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a" * 64, "_x", ".x", "-x", "a b", "a/b", "../x", "a..b", "wéb", "a\n", "a:b", "a\x00"]
)
def test_validate_container_name_bad(name: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_container_name(name)
    assert info.value.key == "name"
    assert repr(name) in str(info.value)


def test_validate_container_name_not_a_string() -> None:
    with pytest.raises(TypeError):
        validate_container_name(7)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------


def test_limits_convert_and_render() -> None:
    limits = Limits(memory="64M", memory_swap="1G", cpus=0.5, cpu_shares=512, cpuset="0-1", pids=64)
    assert limits.memory == 64 << 20
    assert limits.memory_swap == 1 << 30
    assert limits.to_dict() == {
        "memory": "64M", "memory_swap": "1G", "cpus": 0.5, "cpu_shares": 512, "cpuset": "0-1", "pids": 64
    }
    assert Limits.from_dict(limits.to_dict()) == limits
    assert eval(repr(limits)) == limits
    assert Limits().to_dict() == {}
    assert Limits(memory=1000).to_dict() == {"memory": 1000}
    assert Limits(memory=3 << 10).to_dict() == {"memory": "3k"}
    assert Limits(memory="1M", memory_swap=-1).to_dict() == {"memory": "1M", "memory_swap": -1}
    assert Limits(memory_swap="-1").memory_swap == -1
    assert Limits(cpus="1.5", pids="10", cpu_shares="2", cpuset=0).to_dict() == {
        "cpus": 1.5, "cpu_shares": 2, "cpuset": "0", "pids": 10
    }
    assert Limits(cpus=2).cpus == 2.0 and isinstance(Limits(cpus=2).cpus, float)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("memory", "64Q", "'64Q'"),
        ("memory", 0, "0"),
        ("memory", 1.5, "1.5"),
        ("memory", True, "True"),
        ("memory_swap", "-2", "'-2'"),
        ("cpus", 0, "> 0"),
        ("cpus", -1, "-1"),
        ("cpus", 1025, "1025"),
        ("cpus", "lots", "'lots'"),
        ("cpus", float("nan"), "nan"),
        ("cpus", True, "True"),
        ("cpus", [1], "list"),
        ("cpu_shares", 1, "from 2 to 262144"),
        ("cpu_shares", 262145, "262145"),
        ("cpu_shares", 2.5, "float"),
        ("cpuset", "0-", "'0-'"),
        ("cpuset", "a", "'a'"),
        ("cpuset", "3-1", "backwards"),
        ("cpuset", "0,,1", "'0,,1'"),
        ("cpuset", -1, "-1"),
        ("pids", 0, "from 1"),
        ("pids", -2, "-2"),
        ("pids", "many", "'many'"),
        ("pids", False, "False"),
        ("pids", "9" * 5000, "999"),
        ("cpuset", "0-" + "9" * 5000, "999"),
    ],
)
def test_limits_bad_values(field: str, value: object, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        Limits(**{field: value})
    assert info.value.key == f"limits.{field}"
    assert needle in str(info.value)
    assert "expected" in str(info.value) or "backwards" in str(info.value)


def test_limits_memory_swap_must_cover_memory() -> None:
    with pytest.raises(SpecError) as info:
        Limits(memory="1G", memory_swap="512M")
    assert info.value.key == "limits.memory_swap"
    assert Limits(memory="1G", memory_swap="1G").memory_swap == 1 << 30
    assert Limits(memory="1G", memory_swap=-1).memory_swap == -1


def test_limits_swap_is_the_part_beyond_memory() -> None:
    assert Limits(memory="64M").swap() is None
    assert Limits(memory="64M", memory_swap="192M").swap() == 128 << 20
    assert Limits(memory="64M", memory_swap="64M").swap() == 0
    assert Limits(memory_swap=-1).swap() == -1
    # An override may set memory_swap alone; the limits a container runs with may not.
    partial = Limits(memory_swap="128M")
    with pytest.raises(SpecError, match="memory_swap needs memory") as info:
        partial.swap()
    assert info.value.key == "limits.memory_swap"
    assert Limits(memory="64M").merged(partial).swap() == 64 << 20


def test_limits_from_dict_errors_use_the_given_key() -> None:
    with pytest.raises(SpecError) as info:
        Limits.from_dict({"memory": "x"}, key="defaults.limits")
    assert info.value.key == "defaults.limits.memory"
    with pytest.raises(SpecError, match="allowed: memory, memory_swap, cpus") as info:
        Limits.from_dict({"swap": 1})
    assert info.value.key == "limits.swap"
    with pytest.raises(SpecError):
        Limits.from_dict([("memory", 1)])  # type: ignore[arg-type]


def test_limits_merged() -> None:
    base = Limits(memory="64M", cpus=0.5, pids=64)
    override = Limits(memory="128M", cpuset="0")
    merged = base.merged(override)
    assert merged == Limits(memory="128M", cpus=0.5, pids=64, cpuset="0")
    assert base.merged(Limits()) == base
    assert Limits().merged(base) == base
    assert base == Limits(memory="64M", cpus=0.5, pids=64)  # unchanged: values are frozen


def test_limits_are_frozen_and_hashable() -> None:
    limits = Limits(memory="64M")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        limits.memory = 1  # type: ignore[misc]
    assert hash(limits) == hash(Limits(memory=64 << 20))


# --------------------------------------------------------------------------
# Mount
# --------------------------------------------------------------------------


def test_mount_good() -> None:
    mount = Mount("/srv/data", "/data", read_only=True)
    assert (mount.source, mount.target, mount.read_only) == ("/srv/data", "/data", True)
    assert Mount("/srv/../srv/data", "/data").read_only is False
    assert Mount.parse("/a:/b:ro") == Mount("/a", "/b", read_only=True)
    assert Mount.parse("/a:/b") == Mount("/a", "/b")


@pytest.mark.parametrize(
    ("args", "key", "needle"),
    [
        (("srv/data", "/data"), "mount.source", "'srv/data'"),
        (("/srv/data", "data"), "mount.target", "'data'"),
        (("/srv/data", "/data/../etc"), "mount.target", "'/data/../etc'"),
        (("/srv/data", "/da\x00ta"), "mount.target", "control"),
        ((5, "/data"), "mount.source", "5"),
        (("/srv", "/data", "yes"), "mount.read_only", "'yes'"),
    ],
)
def test_mount_bad(args: tuple[object, ...], key: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        Mount(*args)  # type: ignore[arg-type]
    assert info.value.key == key
    assert needle in str(info.value)


def test_mount_parse_bad() -> None:
    with pytest.raises(SpecError) as info:
        Mount.parse("/a:/b:rx")
    assert info.value.key == "mount"


# --------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------

INSTRUCTIONS = [
    (Layer.run("mkdir -p /www"), "RUN mkdir -p /www"),
    (Layer.run("echo ok", network="none"), "RUN --network=none echo ok"),
    (Layer.run("set -x\necho a\necho b\n"), "RUN set -x\\necho a\\necho b"),
    (Layer.copy("site/", "/www/"), "COPY site/ /www/"),
    (Layer.copy("a", "/b", mode=0o644), "COPY --chmod=0644 a /b"),
    (Layer.copy("a", "/b", mode="755"), "COPY --chmod=0755 a /b"),
    (Layer.env(B="2", A="1"), "ENV A=1 B=2"),
    (Layer.env({"MSG": "hello world", "EMPTY": ""}), 'ENV EMPTY="" MSG="hello world"'),
    (Layer.workdir("/www"), "WORKDIR /www"),
]


@pytest.mark.parametrize(("layer", "text"), INSTRUCTIONS)
def test_layer_instruction(layer: Layer, text: str) -> None:
    assert layer.instruction() == text
    assert "\n" not in layer.instruction()


def test_layer_canonical_is_exact_and_stable() -> None:
    # These dicts feed cache keys: changing them invalidates every cache. Change on purpose only.
    assert Layer.run("make").canonical() == {"kind": "run", "script": "make", "network": "host"}
    assert Layer.run("make", network="none").canonical() == {
        "kind": "run", "script": "make", "network": "none"
    }
    assert Layer.copy("site/", "/www/").canonical() == {
        "kind": "copy", "src": "site/", "dest": "/www/", "mode": None
    }
    assert Layer.copy("a", "/b", mode="0644").canonical() == {
        "kind": "copy", "src": "a", "dest": "/b", "mode": 420
    }
    assert Layer.env(B="2", A="1").canonical() == {"kind": "env", "env": [["A", "1"], ["B", "2"]]}
    assert Layer.workdir("/www").canonical() == {"kind": "workdir", "path": "/www"}
    for layer, _ in INSTRUCTIONS:
        assert json.loads(json.dumps(layer.canonical(), sort_keys=True)) == layer.canonical()


def test_layer_same_step_spelled_differently_is_equal() -> None:
    assert Layer.run("echo hi\n") == Layer.run("echo hi")
    assert Layer.run("echo hi\n").canonical() == Layer.run("echo hi").canonical()
    assert Layer.run("x") == Layer.run("x", network="host")
    assert Layer.env(A="1", B="2") == Layer.env({"B": "2"}, A="1")
    assert Layer.copy("a", "/b", mode=0o644) == Layer.copy("a", "/b", mode="0644")
    assert Layer.copy("a", "/b", mode=0o644) == Layer.copy("a", "/b", mode="0o644")
    assert hash(Layer.env(A="1", B="2")) == hash(Layer.env(B="2", A="1"))


def test_layer_env_pairs_attribute() -> None:
    layer = Layer.env({"PATH": "/bin"}, HOME="/root")
    assert layer.kind == "env"
    assert layer.env_pairs == (("HOME", "/root"), ("PATH", "/bin"))
    assert dict(layer.env_pairs) == {"HOME": "/root", "PATH": "/bin"}


def test_layer_fields_and_repr() -> None:
    layer = Layer.copy("site/", "/www/", mode=0o600)
    assert (layer.kind, layer.src, layer.dest, layer.mode) == ("copy", "site/", "/www/", 0o600)
    assert repr(layer) == "Layer.copy('site/', '/www/', mode=0o600)"
    assert repr(Layer.run("x", network="none")) == "Layer.run('x', network='none')"
    assert Layer.workdir("/w").path == "/w"
    for layer, _ in INSTRUCTIONS:
        assert eval(repr(layer)) == layer


@pytest.mark.parametrize(
    ("make", "key", "needle"),
    [
        (lambda: Layer.run(""), "run", "empty"),
        (lambda: Layer.run("  \n\t"), "run", "empty"),
        (lambda: Layer.run("a\x00b"), "run", "NUL"),
        (lambda: Layer.run(5), "run", "5"),  # type: ignore[arg-type]
        (lambda: Layer.run("x", network="bridge"), "network", "'bridge'"),
        (lambda: Layer.copy("../secret", "/x"), "copy.src", "'../secret'"),
        (lambda: Layer.copy("a/../../b", "/x"), "copy.src", "'a/../../b'"),
        (lambda: Layer.copy("a/../b", "/x"), "copy.src", "'..'"),
        (lambda: Layer.copy("/etc/passwd", "/x"), "copy.src", "'/etc/passwd'"),
        (lambda: Layer.copy("", "/x"), "copy.src", "''"),
        (lambda: Layer.copy("a\nb", "/x"), "copy.src", "control"),
        (lambda: Layer.copy("a", ""), "copy.dest", "missing"),
        (lambda: Layer.copy("a", "x/"), "copy.dest", "'x/'"),
        (lambda: Layer.copy("a", "/x/../y"), "copy.dest", "'..'"),
        (lambda: Layer.copy("a", "/x", mode=0o10000), "copy.mode", "0o7777"),
        (lambda: Layer.copy("a", "/x", mode=-1), "copy.mode", "-1"),
        (lambda: Layer.copy("a", "/x", mode="rw-r--r--"), "copy.mode", "'rw-r--r--'"),
        (lambda: Layer.copy("a", "/x", mode="0o"), "copy.mode", "'0o'"),
        (lambda: Layer.copy("a", "/x", mode=True), "copy.mode", "True"),
        (lambda: Layer.env(), "env", "at least one"),
        (lambda: Layer.env({"A=B": "x"}), "env.A=B", "'A=B'"),
        (lambda: Layer.env({"A B": "x"}), "env.A B", "'A B'"),
        (lambda: Layer.env({"A": 1}), "env.A", "1"),  # type: ignore[dict-item]
        (lambda: Layer.env({"A": "x\x00"}), "env.A", "NUL"),
        (lambda: Layer.workdir("www"), "workdir", "'www'"),
        (lambda: Layer(kind="build"), "kind", "'build'"),
        (lambda: Layer(kind="run", script="x", src="a"), "run", "'src'"),
        (lambda: Layer(kind="copy", src="a", dest="/b", network="none"), "copy", "'network'"),
    ],
)
def test_layer_bad(make: object, key: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        make()  # type: ignore[operator]
    assert info.value.key == key
    assert needle in str(info.value)


def test_layer_to_yaml_obj() -> None:
    assert Layer.run("x").to_yaml_obj() == {"run": "x"}
    assert Layer.run("x", network="none").to_yaml_obj() == {"run": "x", "network": "none"}
    assert Layer.copy("a", "/b").to_yaml_obj() == {"copy": {"src": "a", "dest": "/b"}}
    assert Layer.copy("a", "/b", mode=0o4755).to_yaml_obj() == {
        "copy": {"src": "a", "dest": "/b", "mode": "4755"}
    }
    assert Layer.env(A="1").to_yaml_obj() == {"env": {"A": "1"}}
    assert Layer.workdir("/w").to_yaml_obj() == {"workdir": "/w"}


# --------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------


def spec_image() -> Image:
    """The image of SPEC.md section 2."""
    return Image(
        "web:1.0",
        base="busybox",
        layers=[
            Layer.run("mkdir -p /www"),
            Layer.copy("site/", "/www/"),
            Layer.run("echo ok > /www/health", network="none"),
        ],
        env={"PORT": "8080"}, workdir="/www", user="root",
        cmd=["httpd", "-f", "-p", "8080", "-h", "/www"],
        labels={"org.example.team": "web"},
        limits=Limits(memory="64M", cpus=0.5, pids=64),
    )


SPEC_YAML = """\
name: web:1.0
base: busybox
env: {PORT: "8080"}
workdir: /www
user: root
labels: {org.example.team: web}
layers:
  - run: mkdir -p /www
  - copy: {src: site/, dest: /www/}
  - run: |
      echo ok > /www/health
    network: none
cmd: [httpd, -f, -p, "8080", -h, /www]
limits: {memory: 64M, cpus: 0.5, pids: 64}
"""


def test_image_normalizes() -> None:
    image = Image("web", layers=["echo hi", Layer.workdir("/w")], cmd="echo hi", limits={"memory": "1G"})
    assert image.name == "web:latest"
    assert (image.repository, image.tag) == ("web", "latest")
    assert image.layers == (Layer.run("echo hi"), Layer.workdir("/w"))
    assert image.cmd == ("/bin/sh", "-c", "echo hi")
    assert image.limits == Limits(memory="1G")
    assert Image("org/web:2").repository == "org/web"
    assert Image("x", base="image:web").base == "image:web:latest"
    assert Image("x", cmd=("a", "")).cmd == ("a", "")
    assert Image("x", layers=None, env=None, labels=None, limits=None) == Image("x")


def test_image_copies_its_dicts() -> None:
    env = {"A": "1"}
    image = Image("x", env=env)
    env["B"] = "2"
    assert image.env == {"A": "1"}


def test_image_equality_and_hash() -> None:
    a, b = spec_image(), spec_image()
    assert a == b and hash(a) == hash(b)
    assert attrs.evolve(a, context=None) == a
    assert a != attrs.evolve(a, env={"PORT": "8081"})
    assert a != attrs.evolve(a, labels={})
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "base",
    ["busybox", "debian:bookworm", "debian:trixie-backports", "dir:/srv/rootfs", "dir:/srv/rootfs/",
     "tar:/srv/rootfs.tar", "tar:/srv/r.tar.gz", "tar:/srv/r.tgz", "tar:/srv/r.tar.xz", "tar:/srv/r.tar.zst",
     "image:web:1.0", "image:org/web:latest"],
)
def test_image_good_bases(base: str) -> None:
    assert Image("x", base=base).base == base


@pytest.mark.parametrize(
    "base",
    ["", "ubuntu", "debian", "debian:", "debian:Bookworm", "dir:", "dir:rel", "dir:/a/../b", "tar:/r.zip",
     "tar:r.tar", "image:", "image:Web", "image:a:b:c", "busybox:1", 5, None],
)
def test_image_bad_bases(base: object) -> None:
    with pytest.raises(SpecError) as info:
        Image("x", base=base)
    assert info.value.key == "base"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"name": "Web"}, "name"),
        ({"name": 5}, "name"),
        ({"layers": "echo hi"}, "layers"),
        ({"layers": {"run": "x"}}, "layers"),
        ({"layers": [Layer.run("x"), 5]}, "layers[1]"),
        ({"layers": ["ok", "  "]}, "layers[1].run"),
        ({"env": {"A\tB": "x"}}, "env"),
        ({"env": {"A": 1}}, "env.A"),
        ({"env": [("A", "1")]}, "env"),
        ({"labels": {"a": 1}}, "labels.a"),
        ({"labels": {"": "x"}}, "labels"),
        ({"workdir": "www"}, "workdir"),
        ({"user": ""}, "user"),
        ({"user": "a b"}, "user"),
        ({"cmd": []}, "cmd"),
        ({"cmd": ""}, "cmd"),
        ({"cmd": 5}, "cmd"),
        ({"cmd": ["echo", 5]}, "cmd[1]"),
        ({"cmd": ["", "x"]}, "cmd[0]"),
        ({"cmd": ["a\x00"]}, "cmd[0]"),
        ({"limits": {"memory": "x"}}, "limits.memory"),
        ({"limits": {"bogus": 1}}, "limits.bogus"),
        ({"limits": 5}, "limits"),
        ({"context": 5}, "context"),
    ],
)
def test_image_bad_values(kwargs: dict[str, object], key: str) -> None:
    kwargs.setdefault("name", "web")
    with pytest.raises(SpecError) as info:
        Image(**kwargs)
    assert info.value.key == key


@pytest.mark.parametrize("user", ["root", "www-data", "1000", "1000:1000", "app:staff", "_svc"])
def test_image_good_users(user: str) -> None:
    assert Image("x", user=user).user == user


def test_image_repr_and_html() -> None:
    image = Image("web", layers=[Layer.run("echo '<b>' & true")], env={"A": "<x>"}, cmd=["sh"],
                  limits=Limits(memory="64M"))
    assert repr(image) == (
        "Image('web:latest', layers=(Layer.run(\"echo '<b>' & true\"),), env={'A': '<x>'}, cmd=('sh',),"
        " limits=Limits(memory='64M'))"
    )
    page = image._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    assert "RUN echo &#x27;&lt;b&gt;&#x27; &amp; true" in page
    assert "<b>" not in page and "<x>" not in page
    assert "memory=64M" in page and "web:latest" in page


# --------------------------------------------------------------------------
# YAML round trips
# --------------------------------------------------------------------------

ROUND_TRIP_IMAGES = [
    Image("minimal"),
    spec_image(),
    Image(
        "org/every-kind:v2",
        base="debian:bookworm",
        layers=[
            "apt-get update",
            Layer.run("set -e\ncat > /etc/motd <<'EOF'\n  indented: yes\nEOF\n", network="none"),
            Layer.copy("site/", "/www/", mode=0o644),
            Layer.copy("bin/tool", "/usr/local/bin/tool", mode=0o4755),
            Layer.env({"ON": "yes", "NUM": "8080", "FLOAT": "1.10", "EMPTY": "", "TILDE": "~", "NL": "a\nb"}),
            Layer.workdir("/srv/app"),
            Layer.run("echo 'quotes \" and \\\\ backslash' # and a comment"),
            Layer.run("  leading spaces\ttab"),
            Layer.run("ünïcödé ✓"),
        ],
        env={"PATH": "/usr/bin:/bin", "TRUE": "true", "NULL": "null", "DATE": "2024-01-31"},
        workdir="/srv/app",
        user="1000:1000",
        cmd="exec ./serve --port 8080",
        labels={"org.opencontainers.image.title": "x", "on": "off", "n": "1e3"},
        limits=Limits(memory=1000, memory_swap=-1, cpus=1e-05, cpu_shares=1024, cpuset="0,2-3", pids=1),
    ),
    Image("tar-based", base="tar:/srv/rootfs.tar.zst", cmd=["/bin/true"], limits=Limits(cpus=2)),
    Image("image-based:1", base="image:web:1.0", layers=[Layer.env(A="1")], user="nobody"),
    Image("dir-based", base="dir:/srv/root fs", labels={"a": ": colon"},
          cmd=["- dash", "[bracket", "{brace", "#"]),
]


@pytest.mark.parametrize("image", ROUND_TRIP_IMAGES, ids=lambda image: image.name)
def test_round_trip(image: Image) -> None:
    text = image.to_yaml()
    again = Image.from_yaml(text)
    assert again == image
    assert again.to_yaml() == text


def test_spec_yaml_matches_python_form() -> None:
    assert Image.from_yaml(SPEC_YAML) == spec_image()


def test_to_yaml_is_readable_and_omits_defaults() -> None:
    assert Image("web").to_yaml() == "name: web:latest\n"
    text = spec_image().to_yaml()
    assert text == (
        "name: web:1.0\n"
        "env: {PORT: '8080'}\n"
        "workdir: /www\n"
        "labels: {org.example.team: web}\n"
        "layers:\n"
        "- run: mkdir -p /www\n"
        "- copy: {src: site/, dest: /www/}\n"
        "- run: echo ok > /www/health\n"
        "  network: none\n"
        "cmd: [httpd, -f, -p, '8080', -h, /www]\n"
        "limits: {memory: 64M, cpus: 0.5, pids: 64}\n"
    )
    multi = Image("x", layers=[Layer.run("a\nb")]).to_yaml()
    assert "- run: |-\n    a\n    b\n" in multi


def test_yaml_keys_follow_the_documented_order() -> None:
    image = ROUND_TRIP_IMAGES[2]
    keys = [line.split(":")[0] for line in image.to_yaml().splitlines() if line[:1].isalpha()]
    assert keys == ["name", "base", "env", "workdir", "user", "labels", "layers", "cmd", "limits"]


# --------------------------------------------------------------------------
# YAML reading details
# --------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["0644", "644", "'0644'", '"644"', "0o644", "'0o644'"])
def test_yaml_mode_reads_like_chmod(written: str) -> None:
    image = Image.from_yaml(f"name: x\nlayers:\n  - copy: {{src: a, dest: /b, mode: {written}}}\n")
    assert image.layers[0].mode == 0o644


def test_yaml_scalars_become_text_where_text_is_expected() -> None:
    image = Image.from_yaml(
        "name: x\n"
        "user: 1000\n"
        "env: {PORT: 8080, VERSION: 1.10, DATE: 2024-13-45, on: x, HEX: 0x1F}\n"
        "labels: {1.0: one}\n"
        "cmd: [serve, --port, 8080]\n"
        "layers:\n"
        "  - 42\n"
        "  - run: |\n"
        "      echo hi\n"
        "limits: {memory: 1073741824, cpus: 1, cpuset: 0, pids: '64'}\n"
    )
    assert image.user == "1000"
    assert image.env == {"PORT": "8080", "VERSION": "1.10", "DATE": "2024-13-45", "on": "x", "HEX": "0x1F"}
    assert image.labels == {"1.0": "one"}
    assert image.cmd == ("serve", "--port", "8080")
    assert image.layers == (Layer.run("42"), Layer.run("echo hi"))
    assert image.limits == Limits(memory="1G", cpus=1.0, cpuset="0", pids=64)


def test_yaml_booleans_are_words_in_scripts_and_commands() -> None:
    image = Image.from_yaml("name: x\nlayers:\n  - run: true\n  - yes\ncmd: [echo, on, off]\n")
    assert image.layers == (Layer.run("true"), Layer.run("yes"))
    assert image.cmd == ("echo", "on", "off")


def test_yaml_user_sexagesimal_is_kept_as_written() -> None:
    # YAML 1.1 reads 1000:50 as the base-60 integer 60050.
    assert Image.from_yaml("name: x\nuser: 1000:50\n").user == "1000:50"


def test_yaml_null_optional_values_mean_unset() -> None:
    image = Image.from_yaml("name: x\nlimits: {memory: ~}\nlayers:\n  - copy: {src: a, dest: /b, mode: ~}\n")
    assert image.limits == Limits()
    assert image.layers[0].mode is None


def test_yaml_error_without_path_has_line() -> None:
    with pytest.raises(SpecError) as info:
        Image.from_yaml("name: web\nlimits:\n  memory: lots\n")
    err = info.value
    assert (err.key, err.line, err.path) == ("limits.memory", 3, None)
    assert str(err).startswith("line 3: limits.memory: ")


def test_yaml_path_only_names_the_file() -> None:
    with pytest.raises(SpecError) as info:
        Image.from_yaml("name: Web\n", path="images/web.yaml")
    assert str(info.value).startswith("images/web.yaml:1: name: ")


@pytest.mark.parametrize(
    "text",
    [
        "name: x\x07\n",          # non-printable character: a PyYAML ReaderError
        "name: x\n" + "[" * 3000,  # deep nesting
        "name: &a [*a]\n",         # a recursive alias
        "name: x\nenv: {A: !!python/object:os.system x}\n",
        "name: x\nlimits: {pids: 1_000_000_000_000_000_000_000}\n",
        "name: x\nlimits: {cpus: .nan}\n",
        "\ufeffname: Five\n",
        "%YAML 1.1\n%YAML 1.1\n---\nname: x\n",
        "name: x\nlayers: [{run: x}, *undefined]\n",
    ],
)
def test_yaml_never_leaks_other_errors(text: str) -> None:
    with pytest.raises(SpecError):
        Image.from_yaml(text)


def test_yaml_reader_error_has_line() -> None:
    with pytest.raises(SpecError) as info:
        Image.from_yaml("name: x\nbase: busybox\nuser: a\x07\n")
    assert info.value.line == 3


def test_from_yaml_accepts_bytes_and_refuses_other_types() -> None:
    assert Image.from_yaml(b"name: x\n") == Image("x")  # type: ignore[arg-type]
    with pytest.raises(SpecError):
        Image.from_yaml(b"name: \xff\n")  # type: ignore[arg-type]
    with pytest.raises(SpecError):
        Image.from_yaml(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Copy sources and the build context
# --------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: pathlib.Path) -> pathlib.Path:
    """A build context with a site folder, a file, and symlinks in and out of it."""
    ctx = tmp_path / "ctx"
    (ctx / "site" / "css").mkdir(parents=True)
    (ctx / "site" / "index.html").write_text("<h1>hi</h1>")
    (ctx / "file.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s")
    os.symlink(tmp_path / "outside", ctx / "escape")               # absolute, leaves the context
    os.symlink("../../outside/secret", ctx / "site" / "rel-escape")  # relative, leaves the context
    os.symlink("site", ctx / "inside")                              # stays inside
    os.symlink("index.html", ctx / "site" / "home.html")            # stays inside
    os.symlink("nowhere", ctx / "dangling")
    return ctx


@pytest.mark.parametrize(
    ("src", "relative_target"),
    [
        ("file.txt", "file.txt"),
        ("site", "site"),
        ("site/", "site"),
        ("./site/index.html", "site/index.html"),
        (".", "."),
        ("inside/", "site"),
        ("inside/index.html", "site/index.html"),
        ("site/home.html", "site/index.html"),
    ],
)
def test_resolve_copy_source_good(context: pathlib.Path, src: str, relative_target: str) -> None:
    real = pathlib.Path(os.path.realpath(context))
    assert resolve_copy_source(context, src) == (real / relative_target).resolve()
    assert resolve_copy_source(str(context), src) == resolve_copy_source(context, src)


@pytest.mark.parametrize(
    ("src", "needle"),
    [
        ("../outside/secret", "'..'"),
        ("site/../../outside", "'..'"),
        ("..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("escape", "outside the build context"),
        ("escape/secret", "outside the build context"),
        ("site/rel-escape", "outside the build context"),
        ("missing.txt", "does not exist"),
        ("dangling", "does not exist"),
        ("file.txt/", "not a directory"),
        ("", "non-empty"),
    ],
)
def test_resolve_copy_source_bad(context: pathlib.Path, src: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        resolve_copy_source(context, src, key="layers[3].copy.src")
    assert info.value.key == "layers[3].copy.src"
    assert needle in str(info.value)
    assert repr(src) in str(info.value) or src == ""


def test_resolve_copy_source_context_must_be_a_folder(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpecError) as info:
        resolve_copy_source(tmp_path / "missing", "a")
    assert info.value.key == "context"


def test_resolve_copy_source_context_through_a_symlink(context: pathlib.Path, tmp_path: pathlib.Path) -> None:
    os.symlink(context, tmp_path / "ctx-link")
    assert resolve_copy_source(tmp_path / "ctx-link", "file.txt").read_text() == "x"


def test_image_context_checks_copy_sources(context: pathlib.Path) -> None:
    good = Image("x", layers=[Layer.run("true"), Layer.copy("site/", "/www/")], context=context)
    assert good.context == str(context)
    with pytest.raises(SpecError) as info:
        Image("x", layers=[Layer.run("true"), Layer.copy("escape/", "/www/")], context=context)
    assert info.value.key == "layers[1].copy.src"
    without = Image("x", layers=[Layer.copy("missing", "/m")])
    with pytest.raises(SpecError) as info:
        without.with_context(context)
    assert info.value.key == "layers[0].copy.src"
    assert good.with_context(None).context is None
    assert good.with_context(None) == good


def test_image_load(context: pathlib.Path) -> None:
    path = context / "image.yaml"
    path.write_text(SPEC_YAML)
    image = Image.load(path)
    assert image == spec_image()
    assert image.context == str(context)
    assert Image.load(str(path)) == image


def test_image_load_reports_missing_copy_source(context: pathlib.Path) -> None:
    path = context / "image.yaml"
    path.write_text(
        "name: web\nlayers:\n  - run: true\n  - copy:\n      src: no-such-dir/\n      dest: /www/\n"
    )
    with pytest.raises(SpecError) as info:
        Image.load(path)
    err = info.value
    assert (err.key, err.line, err.path) == ("layers[1].copy.src", 5, str(path))
    assert str(err).startswith(f"{path}:5: layers[1].copy.src: 'no-such-dir/' does not exist")


def test_image_load_unreadable_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpecError) as info:
        Image.load(tmp_path / "missing.yaml")
    assert info.value.path == str(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match="UTF-8"):
        Image.load(binary)


# --------------------------------------------------------------------------
# The bad YAML corpus: each file says the error it must raise
# --------------------------------------------------------------------------


def _expectations(path: pathlib.Path) -> tuple[str, str, int | None]:
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = {}
    for prefix, line in zip(("expect", "key", "line"), lines[:3]):
        assert line.startswith(f"# {prefix}:"), f"{path.name}: line for {prefix!r} is {line!r}"
        fields[prefix] = line.split(":", 1)[1].strip()
    return fields["expect"], fields["key"], None if fields["line"] == "none" else int(fields["line"])


BAD_FILES = sorted(BAD_YAML.glob("*.yaml"))


def test_bad_yaml_corpus_is_large_enough() -> None:
    assert len(BAD_FILES) >= 35


@pytest.mark.parametrize("source", BAD_FILES, ids=lambda p: p.stem)
def test_bad_yaml(source: pathlib.Path, context: pathlib.Path) -> None:
    expect, key, line = _expectations(source)
    # Loaded from inside the fixture context, so copy cases meet real files
    # and a real symlink pointing out of the context ("escape").
    path = context / source.name
    shutil.copyfile(source, path)
    with pytest.raises(SpecError) as info:
        Image.load(path)
    err = info.value
    assert expect in str(err)
    assert err.key == key
    assert err.line == line
    assert err.path == str(path)
    # The same text without a file gives the same key and line.
    with pytest.raises(SpecError) as again:
        Image.from_yaml(source.read_text(encoding="utf-8"), context=str(context))
    assert (again.value.key, again.value.line, again.value.path) == (key, line, None)
