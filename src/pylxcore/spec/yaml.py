"""The YAML form of an image (SPEC.md section 2): reading it with file:line:key errors, and writing it.

The reader builds the spec values (Layer, Limits, and an Image through the
``make`` it is given) and points every SpecError at the line of the bad
value; the writer emits what ``Image.to_yaml`` hands it. Only this module
imports PyYAML, and only ``Image.from_yaml``/``to_yaml`` import this module,
so a program that never reads YAML never loads PyYAML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import attrs
import yaml

from pylxcore.errors import SpecError
from pylxcore.spec.healthcheck import HEALTHCHECK_KEYS
from pylxcore.spec.layer import LAYER_KINDS, Layer
from pylxcore.spec.limits import Limits
from pylxcore.spec.validate import type_name

__all__ = [
    "COPY_KEYS",
    "HEALTHCHECK_KEYS",
    "LAYER_KEYS",
    "LIMIT_KEYS",
    "TOP_KEYS",
    "read_image",
    "write_image",
]

T = TypeVar("T")

# The keys each mapping may hold; docs/yaml.md lists the same (tests/test_docs.py checks).
TOP_KEYS = (
    "name",
    "base",
    "env",
    "workdir",
    "user",
    "labels",
    "layers",
    "entrypoint",
    "cmd",
    "exposed_ports",
    "volumes",
    "stop_signal",
    "healthcheck",
    "limits",
)
LAYER_KEYS = (*LAYER_KINDS, "network")
COPY_KEYS = ("src", "dest", "mode")
LIMIT_KEYS = tuple(f.name for f in attrs.fields(Limits))

_TAG = "tag:yaml.org,2002:"
_YAML_ODD_CHARS = "\x85\u2028\u2029\ufeff"


def read_image(text: object, *, path: str | None, make: Callable[[dict[str, object]], T]) -> T:
    """Read image YAML (str or UTF-8 bytes) and return ``make(values)``.

    ``values`` maps each top-level key present to its value (layers as
    :class:`Layer` objects, limits as a mapping): the keyword arguments of
    ``Image``. ``path`` is only used in error messages.

    Raises:
        SpecError: with ``path``, ``line`` and ``key`` for any mistake: bad
            YAML, a document that is not a mapping, unknown or duplicate
            keys, wrong types, bad values (those ``make`` raises included).
            Nothing else escapes.
    """
    return _YamlReader(path).read_image(text, make)


def write_image(data: Mapping[str, object]) -> str:
    """Emit an image's YAML form: block style at the top, flow style for small leaf values.

    ``data`` holds plain values (``layers`` a list of mappings, as
    ``Layer.to_yaml_obj()`` gives). The node tree is built here rather than
    through a Dumper subclass so the style of each value is explicit and no
    global PyYAML state is touched. The serializer still quotes any string
    that would read back as something else ("8080", "on", "~").
    """
    root = yaml.MappingNode(_TAG + "map", [], flow_style=False)
    for key, value in data.items():
        if key == "layers":
            assert isinstance(value, list)
            items = [_layer_node(item) for item in value]
            node: Any = yaml.SequenceNode(_TAG + "seq", items, flow_style=False)
        elif key == "healthcheck":
            node = _layer_node(value)
        else:
            node = _value_node(value)
        root.value.append((_value_node(key), node))
    text: str = yaml.serialize(root, Dumper=yaml.SafeDumper, allow_unicode=True, width=1 << 16)
    return text


def _layer_node(item: object) -> Any:
    assert isinstance(item, dict)
    pairs = [(_value_node(k), _value_node(v)) for k, v in item.items()]
    return yaml.MappingNode(_TAG + "map", pairs, flow_style=False)


def _value_node(value: object) -> Any:
    if isinstance(value, bool):
        return yaml.ScalarNode(_TAG + "bool", "true" if value else "false")
    if isinstance(value, int):
        return yaml.ScalarNode(_TAG + "int", str(value))
    if isinstance(value, float):
        # PyYAML's own spelling, so that "1e-05" reads back as a float.
        text = repr(value).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        return yaml.ScalarNode(_TAG + "float", text)
    if isinstance(value, str):
        if any(ch in _YAML_ODD_CHARS or ord(ch) < 32 and ch != "\n" for ch in value):
            # PyYAML writes NEL, LS, PS and BOM raw in plain and block styles
            # and then reads them back as line breaks; double quotes escape them.
            style: str | None = '"'
        else:
            # Multi-line scripts read best as "|" blocks; the emitter falls
            # back to a quoted style by itself when a block cannot hold the text.
            style = "|" if "\n" in value else None
        return yaml.ScalarNode(_TAG + "str", value, style=style)
    if isinstance(value, list):
        return yaml.SequenceNode(_TAG + "seq", [_value_node(v) for v in value], flow_style=True)
    if isinstance(value, dict):
        pairs = [(_value_node(k), _value_node(v)) for k, v in value.items()]
        return yaml.MappingNode(_TAG + "map", pairs, flow_style=True)
    raise TypeError(f"cannot write {value!r} as YAML")  # a bug here, never user input


def _join_key(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key or key.startswith("["):
        return prefix + key
    return f"{prefix}.{key}"


class _YamlReader:
    """Turns composed YAML nodes into spec values, tracking key paths and lines.

    PyYAML's constructor is not used: it loses line numbers, accepts duplicate
    keys, and can fail with bare ValueErrors (e.g. on "2020-13-45"). Every
    node's position is recorded under its key path so that a SpecError raised
    later by a constructor (keyed ``limits.memory``) can be pointed at its line.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.nodes: dict[str, Any] = {}

    # -- errors -----------------------------------------------------------

    def fail(self, reason: str, key: str, node: Any) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else None
        raise SpecError(reason, key=key, path=self.path, line=line)

    def relocate(self, err: SpecError, prefix: str = "") -> SpecError:
        """``err`` re-keyed under ``prefix`` and placed at the line of the nearest known node."""
        key = _join_key(prefix, err.key)
        probe = key
        while probe and probe not in self.nodes:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        node = self.nodes.get(probe) or self.nodes.get(prefix) or self.nodes.get("")
        line = node.start_mark.line + 1 if node is not None else None
        return SpecError(err.reason, key=key, path=self.path, line=line)

    # -- structure --------------------------------------------------------

    def mapping(self, node: Any, key: str, allowed: tuple[str, ...] | None) -> list[tuple[str, Any]]:
        """The (name, value node) pairs of a mapping, after checking keys."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(f"expected a mapping, got {self.describe(node)}", key, node)
        seen: dict[str, Any] = {}
        pairs = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(f"expected a plain key, got {self.describe(key_node)}", key, key_node)
            # The key's text, not its YAML 1.1 value: "on:" or "1.0:" are names here.
            name = key_node.value
            child = _join_key(key, name)
            if allowed is not None and name not in allowed:
                self.fail(f"unknown key {name!r}; allowed: {', '.join(allowed)}", child, key_node)
            if name in seen:
                first = seen[name].start_mark.line + 1
                self.fail(f"duplicate key {name!r} (first at line {first})", child, key_node)
            seen[name] = key_node
            self.nodes[child] = value_node
            pairs.append((name, value_node))
        return pairs

    def describe(self, node: Any) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        tag = node.tag.rsplit(":", 1)[-1]
        if tag == "null":
            return "nothing (null)"
        if tag == "str":
            return f"the string {node.value!r}"
        return f"{tag} {node.value}"

    def scalar(self, node: Any, key: str) -> object:
        """The Python value of a scalar: str, int, float, bool or None."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(f"expected a single value, got {self.describe(node)}", key, node)
        tag = node.tag
        if tag == _TAG + "str":
            return str(node.value)
        if tag == _TAG + "null":
            return None
        if tag in (_TAG + "bool", _TAG + "int", _TAG + "float"):
            try:
                constructor = yaml.constructor.SafeConstructor()
                value: object = constructor.construct_object(node)
                return value
            except (ValueError, OverflowError, yaml.YAMLError) as err:
                self.fail(f"cannot read {node.value!r}: {err}", key, node)
        if tag == _TAG + "timestamp":
            # Dates are kept as the text written ("2024-01-31").
            return str(node.value)
        self.fail(f"unsupported YAML tag {tag!r}", key, node)

    def string(self, node: Any, key: str, *, words: bool = False) -> str:
        """A string field. Numbers are taken as written ("1000", "1.10"); booleans and null are refused.

        With ``words``, booleans are taken as written too: in a script or an
        argv, ``true``/``yes``/``on`` are ordinary words (``run: true``).
        """
        value = self.scalar(node, key)
        if isinstance(value, bool) and words:
            return str(node.value)
        if isinstance(value, bool):
            self.fail(
                f"expected a string, got the boolean {node.value!r}"
                " (YAML reads yes/no/on/off/true/false as booleans; quote it)",
                key,
                node,
            )
        if value is None:
            self.fail("expected a string, got nothing (null)", key, node)
        return str(node.value)

    def optional_number(self, node: Any, key: str) -> object:
        """A limit or mode: the scalar as is (the constructors check it); null means unset."""
        return self.scalar(node, key)

    # -- the document -------------------------------------------------------

    def compose(self, text: str) -> Any:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            reason = err.problem or err.context or "syntax error"
            # PyYAML notices a mistake where parsing fails, often a line after
            # the real one; its context mark says where the construct began.
            if err.context and err.context_mark is not None:
                reason += f" ({err.context}: see line {err.context_mark.line + 1})"
            raise SpecError(
                f"invalid YAML: {reason}", path=self.path, line=mark.line + 1 if mark is not None else None
            ) from None
        except yaml.reader.ReaderError as err:
            line = text.count("\n", 0, err.position) + 1
            raise SpecError(
                f"invalid YAML: {err.reason} character {err.character!r}", path=self.path, line=line
            ) from None
        except yaml.YAMLError as err:
            raise SpecError(f"invalid YAML: {err}", path=self.path) from None
        except RecursionError:
            raise SpecError("invalid YAML: nested too deeply", path=self.path) from None

    def read_image(self, text: object, make: Callable[[dict[str, object]], T]) -> T:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as err:
                raise SpecError(f"the YAML is not UTF-8 text: {err.reason}", path=self.path) from None
        if not isinstance(text, str):
            raise SpecError(f"expected YAML text, got {type_name(text)}", path=self.path)
        root = self.compose(text)
        if root is None:
            raise SpecError(
                "the document is empty; expected a mapping with at least 'name'", path=self.path, line=1
            )
        if not isinstance(root, yaml.MappingNode):
            self.fail(f"the document must be a mapping of image keys, got {self.describe(root)}", "", root)
        self.nodes[""] = root
        values: dict[str, object] = {}
        for name, node in self.mapping(root, "", TOP_KEYS):
            if name in ("name", "base", "workdir", "user", "stop_signal"):
                values[name] = self.string(node, name)
            elif name in ("env", "labels"):
                values[name] = {
                    key: self.variable(value, f"{name}.{key}")
                    for key, value in self.mapping(node, name, None)
                }
            elif name == "layers":
                values[name] = self.layers(node)
            elif name in ("cmd", "entrypoint"):
                values[name] = self.cmd(node, name)
            elif name in ("exposed_ports", "volumes"):
                values[name] = self.strings(node, name)
            elif name == "healthcheck":
                values[name] = self.healthcheck(node)
            else:
                values[name] = {
                    key: self.optional_number(value, f"limits.{key}")
                    for key, value in self.mapping(node, "limits", LIMIT_KEYS)
                }
        if "name" not in values:
            self.fail("missing required key 'name' (the image name, like 'web:1.0')", "name", root)
        try:
            return make(values)
        except SpecError as err:
            raise self.relocate(err) from None

    def variable(self, node: Any, key: str) -> str:
        """An env or label value: numbers become their text (as Docker Compose does)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(f"expected a string value, got {self.describe(node)}", key, node)
        return self.string(node, key)

    def cmd(self, node: Any, key: str) -> object:
        """An argv (a list) or a shell-form string: ``cmd``, ``entrypoint``, ``healthcheck.test``."""
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.nodes[f"{key}[{i}]"] = item
                items.append(self.string(item, f"{key}[{i}]", words=True))
            return items
        # The shell form must be written as a string: "cmd: 5" is a mistake.
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
            return str(node.value)
        self.fail(
            f"expected a list of strings or a shell command string, got {self.describe(node)}", key, node
        )

    def strings(self, node: Any, key: str) -> list[str]:
        """A list of strings; numbers are taken as written (``exposed_ports: [80, 443/tcp]``)."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(f"expected a list, got {self.describe(node)}", key, node)
        items = []
        for i, item in enumerate(node.value):
            self.nodes[f"{key}[{i}]"] = item
            items.append(self.string(item, f"{key}[{i}]"))
        return items

    def healthcheck(self, node: Any) -> object:
        """A mapping of HEALTHCHECK_KEYS, or just its test (a list or a shell string)."""
        if not isinstance(node, yaml.MappingNode):
            return self.cmd(node, "healthcheck")
        values: dict[str, object] = {}
        for name, value in self.mapping(node, "healthcheck", HEALTHCHECK_KEYS):
            key = f"healthcheck.{name}"
            values[name] = self.cmd(value, key) if name == "test" else self.optional_number(value, key)
        return values

    def layers(self, node: Any) -> list[Layer]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(f"expected a list of layers, got {self.describe(node)}", "layers", node)
        layers = []
        for i, item in enumerate(node.value):
            key = f"layers[{i}]"
            self.nodes[key] = item
            kind, args = self.layer_args(item, key)
            try:
                if kind == "run":
                    layers.append(Layer.run(args["script"], network=args["network"]))
                elif kind == "copy":
                    layers.append(Layer.copy(args["src"], args["dest"], mode=args["mode"]))
                elif kind == "env":
                    layers.append(Layer.env(args["values"]))
                else:
                    layers.append(Layer.workdir(args["path"]))
            except SpecError as err:
                raise self.relocate(err, key) from None
        return layers

    def layer_args(self, node: Any, key: str) -> tuple[str, dict[str, Any]]:
        """The kind of a layer item and the arguments of its constructor."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _TAG + "null":
                self.fail("empty layer; expected a script string or a mapping like {run: ...}", key, node)
            return "run", {"script": self.string(node, key, words=True), "network": "host"}
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                f"expected a script string or a mapping like {{run: ...}}, got {self.describe(node)}",
                key,
                node,
            )
        fields = dict(self.mapping(node, key, LAYER_KEYS))
        kinds = [name for name in fields if name in LAYER_KINDS]
        if len(kinds) != 1:
            found = " and ".join(repr(k) for k in kinds) if kinds else "none"
            self.fail(f"a layer needs exactly one of {', '.join(LAYER_KINDS)}; found {found}", key, node)
        kind = kinds[0]
        if "network" in fields and kind != "run":
            self.fail(
                f"'network' only applies to run layers, not {kind}", f"{key}.network", fields["network"]
            )
        value = fields[kind]
        if kind == "run":
            network = self.string(fields["network"], f"{key}.network") if "network" in fields else "host"
            return kind, {"script": self.string(value, f"{key}.run", words=True), "network": network}
        if kind == "copy":
            spec = dict(self.mapping(value, f"{key}.copy", COPY_KEYS))
            for required in ("src", "dest"):
                if required not in spec:
                    self.fail(
                        f"missing {required!r}; copy needs src and dest (mode is optional)",
                        f"{key}.copy.{required}",
                        value,
                    )
            return kind, {
                "src": self.string(spec["src"], f"{key}.copy.src"),
                "dest": self.string(spec["dest"], f"{key}.copy.dest"),
                "mode": self.mode(spec["mode"], f"{key}.copy.mode") if "mode" in spec else None,
            }
        if kind == "env":
            values = {
                name: self.variable(v, f"{key}.env.{name}")
                for name, v in self.mapping(value, f"{key}.env", None)
            }
            return kind, {"values": values}
        return kind, {"path": self.string(value, f"{key}.workdir")}

    def mode(self, node: Any, key: str) -> object:
        """A file mode as written, for ``Layer.copy`` to read like chmod: ``0644``,
        ``644`` and ``"0644"`` all mean 0o644.

        The text rather than the YAML 1.1 value, so that ``644`` does not
        silently mean decimal 644 (0o1204); null means no mode.
        """
        return None if self.scalar(node, key) is None else str(node.value)
