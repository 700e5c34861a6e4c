"""Nothing a user or an image supplies can become liblxc configuration (SPEC §7).

Every field that ends up near the container's config is fed arbitrary text:
either the call raises SpecError, or the config holds exactly the keys the
library meant to write and the values reach the process byte-exact. The
examples of the original report (a ``\\r`` in an env value that added
``lxc.hook.pre-start``, a key starting with ``\\n``, a workdir with ``\\n``,
an imported image whose Env or WorkingDir carried the same) are regression
tests, for default and ``userns=True`` containers.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylxcore import Engine, Image, Layer, Mount, SpecError
from pylxcore.transfer.imageconfig import record_config

# liblxc reads its config line by line; split at every control character, so
# that a line any of them could start is seen as a line of its own here.
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f]")

any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
# Text that leans towards what breaks one-line formats.
nasty_text = st.one_of(
    any_text,
    st.lists(
        st.sampled_from(["\n", "\r", "\x00", "\t", " ", "=", "#", "\\", "lxc.hook.pre-start = /x", "a", "é"]),
        max_size=6,
    ).map("".join),
)


def config_pairs(ctr_dir: Path) -> list[tuple[str, str]]:
    text = (ctr_dir / "config").read_text()
    pairs = []
    for line in _LINE_BREAKS.split(text):
        if not line:
            continue
        key, sep, value = line.partition(" = ")
        assert sep, f"a config line that is not 'key = value': {line!r}"
        pairs.append((key, value))
    return pairs


@pytest.fixture(params=[False, True], ids=["root", "userns"])
def userns(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def reference(engine: Engine, busybox: str, userns: bool) -> collections.Counter[str]:
    c = engine.containers.create(busybox, ["true"], userns=userns)
    keys = collections.Counter(k for k, _ in config_pairs(c.dir))
    c.remove()
    return keys


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    env=st.dictionaries(nasty_text, nasty_text, max_size=4),
    workdir=st.one_of(st.none(), nasty_text.map(lambda t: "/" + t)),
    user=st.one_of(st.none(), nasty_text),
    labels=st.dictionaries(nasty_text, nasty_text, max_size=3),
    name=st.one_of(st.none(), nasty_text),
    targets=st.lists(nasty_text.map(lambda t: "/" + t), max_size=2),
    read_only=st.booleans(),
)
def test_config_holds_only_the_keys_meant(
    engine: Engine,
    busybox: str,
    userns: bool,
    reference: collections.Counter[str],
    tmp_path: Path,
    env: dict[str, str],
    workdir: str | None,
    user: str | None,
    labels: dict[str, str],
    name: str | None,
    targets: list[str],
    read_only: bool,
) -> None:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    try:
        mounts = [Mount(str(source), t, read_only=read_only) for t in targets]
        c = engine.containers.create(
            busybox,
            ["true"],
            name=name,
            env=env,
            workdir=workdir,
            user=user,
            labels=labels,
            mounts=mounts,
            userns=userns,
        )
    except SpecError:
        return  # refused, naming the field: allowed
    try:
        pairs = config_pairs(c.dir)
        keys = collections.Counter(k for k, _ in pairs)
        expected = collections.Counter(reference)
        expected["lxc.mount.entry"] += len(targets)
        env_lines = keys.pop("lxc.environment", 0)
        expected.pop("lxc.environment", None)
        assert keys == expected
        # Each variable at most once, each with its value exactly; the rest
        # (values a line cannot carry) go through lxc-execute's environment.
        seen = [v.partition("=")[0] for k, v in pairs if k == "lxc.environment"]
        assert len(seen) == len(set(seen)) == env_lines
        for k, v in pairs:
            if k == "lxc.environment":
                var, _, value = v.partition("=")
                if var in env:
                    assert value == env[var]
            if k == "lxc.init.cwd":
                assert v == (workdir or "/")
            if k == "lxc.uts.name":
                assert v == c.name
    finally:
        c.remove()


# -- the examples of the report ----------------------------------------------------

HOOK = "lxc.hook.pre-start = /bin/sh -c 'id > {marker}'"


def test_env_value_with_cr_reaches_the_process_and_adds_no_hook(
    engine: Engine, busybox: str, userns: bool, tmp_path: Path
) -> None:
    marker = tmp_path / "MARKER"
    values = {
        "A": "x\r" + HOOK.format(marker=marker),
        "B": "\n" + HOOK.format(marker=marker) + "\n",
        "PEM": "-----BEGIN KEY-----\nabc\n-----END KEY-----\n",
        "SP": " lead and trail ",
        "ODD": "#\\ é \t $HOME",
    }
    r = engine.containers.run(
        busybox,
        ["sh", "-c", 'printf "%s\\0" "$A" "$B" "$PEM" "$SP" "$ODD"'],
        env=values,
        userns=userns,
        remove=True,
    )
    assert (r.exit_code, r.stderr) == (0, b"")
    assert r.stdout.split(b"\0")[:-1] == [v.encode() for v in values.values()]
    assert not marker.exists(), "a config line was injected: the hook ran as host root"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"env": {"\nlxc.cap.keep": "x"}}, "env"),
        ({"env": {"A B": "x"}}, "env.A B"),
        ({"env": {"A": "x\0"}}, "env.A"),
        ({"workdir": "/www\nlxc.seccomp.profile = "}, "workdir"),
        ({"workdir": "/www\r"}, "workdir"),
        ({"workdir": "/www "}, "workdir"),
        ({"user": "root\nlxc.cap.keep ="}, "user"),
        ({"labels": {"a\nb": "x"}}, "labels"),
        ({"env": {"LD_PRELOAD": "/x.so\n"}}, "env.LD_PRELOAD"),
        ({"env": {"GCONV_PATH": "/x\r"}}, "env.GCONV_PATH"),
    ],
)
def test_hostile_fields_are_refused(
    engine: Engine, busybox: str, userns: bool, kwargs: dict[str, Any], key: str
) -> None:
    with pytest.raises(SpecError) as info:
        engine.containers.create(busybox, ["true"], userns=userns, **kwargs)
    assert info.value.key == key
    assert engine.containers.list(all=True) == []


def test_mount_target_with_newline_is_refused(engine: Engine, busybox: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        Mount(str(tmp_path), "/data\nlxc.hook.pre-start = /bin/true")
    assert info.value.key == "mount.target"
    with pytest.raises(SpecError):
        Mount(str(tmp_path) + "\n", "/data")


def test_image_yaml_env_with_cr_reaches_the_process(engine: Engine, userns: bool, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    value = "x\r" + HOOK.format(marker=marker)
    text = "name: inj/yaml:1\nbase: busybox\nenv:\n  A: " + json.dumps(value) + "\n"
    text += "layers:\n  - env: {B: " + json.dumps(value) + "}\n  - run: 'printf %s \"$B\" > /b'\n"
    engine.images.build(Image.from_yaml(text))
    argv = ["sh", "-c", 'printf %s "$A"; cat /b']
    r = engine.containers.run("inj/yaml:1", argv, userns=userns, remove=True)
    assert (r.exit_code, r.stdout) == (0, (value + value).encode())
    assert not marker.exists()


def test_build_step_env_with_newline_reaches_the_step(engine: Engine) -> None:
    image = Image("inj/step:1", layers=[Layer.env(K="one\ntwo "), Layer.run('printf %s "$K" > /k')])
    engine.images.build(image)
    r = engine.containers.run("inj/step:1", ["cat", "/k"], remove=True)
    assert r.stdout == b"one\ntwo "


# -- images from archives ----------------------------------------------------------


def _rewrite_config(layout: Path, change: dict[str, Any]) -> None:
    """Replace the config of the one image in an OCI layout dir (new digests)."""

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    def put(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blob(digest).write_bytes(data)
        return digest, len(data)

    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    manifest = json.loads(blob(desc["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    config["config"].update(change)
    manifest["config"]["digest"], manifest["config"]["size"] = put(json.dumps(config).encode())
    desc["digest"], desc["size"] = put(json.dumps(manifest).encode())
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"Env": ["A=x", "\nlxc.hook.pre-start=/bin/true=1"]}, "config.Env[1]"),
        ({"Env": ["LD_PRELOAD=/evil.so\n"]}, "env.LD_PRELOAD"),
        ({"WorkingDir": "/w\nlxc.cap.keep ="}, "config.WorkingDir"),
        ({"User": "0\nlxc.seccomp.profile ="}, "config.User"),
        ({"Cmd": ["sh", 7]}, "config.Cmd[1]"),
        ({"Labels": {"a\rb": "x"}}, "config.Labels"),
    ],
)
def test_imported_config_is_validated_and_leaves_nothing(
    engine: Engine, busybox: str, tmp_path: Path, change: dict[str, Any], key: str
) -> None:
    layout = engine.images.export(busybox, tmp_path / "layout", format="oci")
    _rewrite_config(layout, change)
    other = Engine(root=tmp_path / "other")
    try:
        before = sorted(p.name for p in (other.root / "layers").iterdir())
        if key.startswith("config."):
            with pytest.raises(SpecError) as info:
                other.images.import_(layout, name="inj/oci:1")
            assert info.value.key == key
            assert sorted(p.name for p in (other.root / "layers").iterdir()) == before
            assert other.images.list() == []
        else:
            # A value only a container's start can judge: refused there, by the same rule.
            other.images.import_(layout, name="inj/oci:1")
            with pytest.raises(SpecError) as info:
                other.containers.run("inj/oci:1", ["true"], remove=True)
            assert info.value.key == key
            assert other.containers.list(all=True) == []
    finally:
        other.close()


@settings(max_examples=300, deadline=None)
@given(
    env=st.lists(nasty_text, max_size=4),
    workdir=st.one_of(st.none(), nasty_text),
    user=st.one_of(st.none(), nasty_text),
    cmd=st.one_of(st.none(), st.lists(nasty_text, max_size=3)),
    labels=st.dictionaries(nasty_text, nasty_text, max_size=2),
)
def test_archive_config_fields_are_validated(
    env: list[str], workdir: str | None, user: str | None, cmd: list[str] | None, labels: dict[str, str]
) -> None:
    """Pure: whatever an archive's config holds, the record is valid or SpecError."""
    from pylxcore.spec import validate

    config = {"config": {"Env": env, "WorkingDir": workdir, "User": user, "Cmd": cmd, "Labels": labels}}
    try:
        record = record_config(config, None)
    except SpecError as err:
        assert err.key.startswith("config.")
        return
    assert validate.env(record["env"]) == record["env"]
    assert validate.workdir(record["workdir"]) == record["workdir"]
    assert validate.user(record["user"]) == record["user"]
    assert validate.labels(record["labels"]) == record["labels"]
    assert record["cmd"] is None or validate.command(record["cmd"]) == tuple(record["cmd"])
