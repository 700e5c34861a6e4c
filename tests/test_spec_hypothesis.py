"""Property tests of pylxcore.spec: name rules hold for any text, YAML input never leaks
a foreign exception, and every valid Image survives to_yaml/from_yaml."""

from __future__ import annotations

import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylxcore.errors import SpecError
from pylxcore.spec import Image, Layer, Limits, validate_container_name, validate_image_ref

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text biased towards the characters that matter to the name rules, plus anything at all.
NAME_ALPHABET = string.ascii_lowercase[:4] + "AZ09._-/: \t\n\x00é\u2028"
name_like = st.one_of(st.text(alphabet=NAME_ALPHABET, max_size=140), st.text(max_size=140))


def _is_safe_name(value: str) -> bool:
    return (".." not in value and not value.startswith("/") and not value.endswith("/")
            and not any(ch.isspace() for ch in value) and len(value) <= 128
            and all(32 < ord(ch) < 127 for ch in value))


@SETTINGS
@given(name_like)
def test_validate_image_ref_accepts_only_safe_refs(text: str) -> None:
    try:
        ref = validate_image_ref(text)
    except SpecError as err:
        assert err.key == "name"
        return
    assert _is_safe_name(ref)
    assert validate_image_ref(ref) == ref
    assert ref.count(":") == 1 and ref.startswith(text.split(":")[0])


@SETTINGS
@given(name_like)
def test_validate_container_name_accepts_only_safe_names(text: str) -> None:
    try:
        name = validate_container_name(text)
    except SpecError as err:
        assert err.key == "name"
        return
    assert name == text
    assert _is_safe_name(name) and "/" not in name and len(name) <= 63


@SETTINGS
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_name_validators_refuse_non_strings_with_type_error(value: object) -> None:
    for check in (validate_image_ref, validate_container_name):
        try:
            check(value)  # type: ignore[arg-type]
        except TypeError:
            pass
        else:
            raise AssertionError(f"{check.__name__} accepted {value!r}")


# --------------------------------------------------------------------------
# YAML input never raises anything but SpecError
# --------------------------------------------------------------------------

YAML_ALPHABET = "namebsyluirpcoytdfwk:-[]{},&*!|>'\"#%@`?~ \n\t0123456789./\\\x07é"
KEYS = ["name", "base", "env", "workdir", "user", "labels", "layers", "cmd", "limits", "run", "copy", "src",
        "dest", "mode", "network", "memory", "cpus", "pids", "cpuset", "cpu_shares", "memory_swap", "PORT",
        "bogus", "<<"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20),
    st.sampled_from(["web:1.0", "busybox", "64M", "/www", "site/", "none", "0644", "x:y:z", "../x", ""]),
)
yamlish = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=5)), children, max_size=5),
    ),
    max_leaves=25,
)


def _load_only_spec_errors(text: str) -> None:
    try:
        image = Image.from_yaml(text, path="fuzz.yaml")
    except SpecError as err:
        assert err.path == "fuzz.yaml"
        assert err.line is None or err.line >= 1
        return
    assert isinstance(image, Image)
    assert Image.from_yaml(image.to_yaml()) == image


@SETTINGS
@given(st.one_of(st.text(max_size=200), st.text(alphabet=YAML_ALPHABET, max_size=200)))
def test_from_yaml_arbitrary_text(text: str) -> None:
    _load_only_spec_errors(text)


@SETTINGS
@given(st.one_of(yamlish, st.dictionaries(st.sampled_from(KEYS), yamlish, max_size=6)))
def test_from_yaml_generated_structures(data: object) -> None:
    _load_only_spec_errors(yaml.safe_dump(data))


LAYER_KEYS = ["run", "copy", "env", "workdir", "network"]
COPY_KEYS = ["src", "dest", "mode"]
LIMIT_KEYS = ["memory", "memory_swap", "cpus", "cpu_shares", "cpuset", "pids"]
nearly_valid = st.fixed_dictionaries(
    {"name": st.sampled_from(["web", "a/b:1"])},
    optional={
        "layers": st.lists(st.one_of(
            st.text(max_size=10),
            st.dictionaries(st.sampled_from(LAYER_KEYS), yamlish, max_size=2),
            st.fixed_dictionaries({"copy": st.dictionaries(st.sampled_from(COPY_KEYS), scalars)}),
        ), max_size=4),
        "limits": st.dictionaries(st.sampled_from(LIMIT_KEYS), scalars),
        "cmd": st.one_of(scalars, st.lists(scalars, max_size=3)),
        "env": st.dictionaries(st.text(max_size=4), scalars, max_size=3),
    },
)


@SETTINGS
@given(nearly_valid)
def test_from_yaml_nearly_valid_documents(data: dict[str, object]) -> None:
    _load_only_spec_errors(yaml.safe_dump(data))


# --------------------------------------------------------------------------
# Valid images round-trip
# --------------------------------------------------------------------------


any_char = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
# NEL (\x85) and LS (\u2028) are kept on purpose: YAML reads them as line breaks.
path_char = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="/", include_characters="\x85")
segment = st.text(path_char, min_size=1, max_size=8).filter(lambda s: s != "..")
abs_path = st.lists(segment, max_size=4).map(lambda parts: "/" + "/".join(parts)).filter(
    lambda p: not p.endswith(" ")  # liblxc trims a config value's trailing spaces: refused
)
rel_path = st.tuples(st.lists(segment, min_size=1, max_size=3), st.booleans()).map(
    lambda t: "/".join(t[0]) + ("/" if t[1] else "")
)
value_text = st.text(any_char, max_size=20)
script = st.text(any_char, min_size=1, max_size=40).filter(lambda s: s.strip() != "")
# Built from small pieces rather than st.from_regex, which is several times slower.
LOWER = string.ascii_lowercase + string.digits
WORD = string.ascii_letters + string.digits + "_"
env_name = st.builds(str.__add__, st.sampled_from(string.ascii_letters + "_"), st.text(WORD, max_size=8))
env_map = st.dictionaries(env_name, value_text, max_size=4)
label_key = st.text(st.characters(exclude_categories=("Cs", "Cc", "Z"), exclude_characters="="),
                    min_size=1, max_size=10)
component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    st.text(LOWER, min_size=1, max_size=8),
    st.lists(st.tuples(st.sampled_from("._-"), st.text(LOWER, min_size=1, max_size=4)), max_size=2),
)
tag = st.builds(str.__add__, st.sampled_from(WORD), st.text(WORD + "-", max_size=8))
image_name = st.builds(
    lambda parts, tag: "/".join(parts) + (":" + tag if tag else ""),
    # (a leading component with a "." before a "/" is a registry host, as in
    # Docker: spec/names.py checks those by the host rule, not this one)
    st.lists(component, min_size=1, max_size=3).filter(lambda parts: len(parts) == 1 or "." not in parts[0]),
    st.one_of(st.none(), tag),
)

layers = st.one_of(
    st.builds(Layer.run, script, network=st.sampled_from(["host", "none"])),
    st.builds(Layer.copy, rel_path, abs_path,
              mode=st.one_of(st.none(), st.integers(0, 0o7777))),
    st.builds(Layer.env, env_map.filter(bool)),
    st.builds(Layer.workdir, abs_path),
    script,
)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    memory = draw(st.one_of(st.none(), st.integers(1, 2**45)))
    swap = draw(st.one_of(st.none(), st.just(-1), st.integers(memory or 1, 2**46)))
    return Limits(
        memory=memory,
        memory_swap=swap,
        cpus=draw(st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1024))),
        cpu_shares=draw(st.one_of(st.none(), st.integers(2, 262144))),
        cpuset=draw(st.one_of(st.none(), st.lists(st.integers(0, 63), min_size=1, max_size=4).map(
            lambda cpus: ",".join(map(str, cpus))))),
        pids=draw(st.one_of(st.none(), st.integers(1, 2**40))),
    )


bases = st.one_of(
    st.sampled_from(["busybox", "debian:bookworm"]),
    abs_path.map(lambda p: "dir:" + p),
    st.builds("tar:{}{}".format, abs_path, st.sampled_from([".tar", ".tgz", ".tar.zst"])),
    image_name.map(lambda n: "image:" + n),
)

images = st.builds(
    Image,
    image_name,
    base=bases,
    layers=st.lists(layers, max_size=5),
    env=env_map,
    workdir=abs_path,
    user=st.builds(str.__add__, st.sampled_from(["root", "nobody", "_svc", "www-data", "0", "1000"]),
                   st.sampled_from(["", ":0", ":1000", ":staff"])),
    cmd=st.one_of(st.none(), script, st.lists(value_text, max_size=4).map(lambda args: ["prog", *args])),
    labels=st.dictionaries(label_key, value_text, max_size=3),
    limits=limits(),
)


@SETTINGS
@given(images)
def test_valid_images_round_trip(image: Image) -> None:
    text = image.to_yaml()
    again = Image.from_yaml(text)
    assert again == image
    assert again.to_yaml() == text
    for layer in image.layers:
        assert "\n" not in layer.instruction()
