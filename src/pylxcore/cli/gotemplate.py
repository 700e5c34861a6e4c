"""The subset of Go's text/template that docker's ``--format`` and ``inspect -f`` use.

Fields (``{{.State.Status}}``, ``{{.}}``), functions ``json``, ``index``,
``join``, ``upper``, ``lower``, ``title``, ``len``, ``println``, one pipe
(``{{.Config.Env | json}}``), ``{{if …}}…{{else}}…{{end}}``, ``{{range
…}}…{{end}}`` (``.`` is each item) and trimming (``{{-`` and ``-}}``). Values
print as Go prints them (``true``, ``map[a:b]``, ``[x y]``, ``<no value>``
for a key a map lacks). ``table`` headers are the caller's (see
``table_headers``). Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from pylxcore.errors import SpecError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|]+')
NO_VALUE = "<no value>"


def go_str(value: Any) -> str:
    """``value`` as Go's fmt prints it with %v."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _field(value: Any, path: str) -> Any:
    for name in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            if name not in value:
                return NO_VALUE
            value = value[name]
        elif value is None or value == NO_VALUE:
            return NO_VALUE
        else:
            raise SpecError(f"can't evaluate field {name} in type {type(value).__name__}", key="format")
    return value


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, dict):
                return NO_VALUE
            raise SpecError(f"error calling index: cannot index {go_str(value)} with {key!r}",
                            key="format") from None
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "join": lambda items, sep: sep.join(go_str(i) for i in items or ()),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "len": lambda s: len(s or ()),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_str(x) for x in a),
}


def _literal(token: str, dot: Any) -> Any:
    if token.startswith('"'):
        return json.loads(token)
    if token.startswith("`"):
        return token[1:-1]
    if token.startswith("."):
        return _field(dot, token)
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token in ("true", "false"):
        return token == "true"
    if token == "nil":
        return None
    raise SpecError(f"function {token!r} not defined", key="format")


def _eval(expr: str, dot: Any) -> Any:
    """A pipeline: ``cmd args | fn | fn args``; each stage's result is the next's last argument."""
    stages: list[list[str]] = [[]]
    for token in _TOKEN.findall(expr):
        if token == "|":
            stages.append([])
        else:
            stages[-1].append(token)
    result: Any = NO_VALUE
    for i, words in enumerate(stages):
        if not words:
            raise SpecError(f"missing command in {expr!r}", key="format")
        head, rest = words[0], [_literal(w, dot) for w in words[1:]]
        if i > 0:
            rest.append(result)
        if head in FUNCTIONS:
            try:
                result = FUNCTIONS[head](*rest)
            except TypeError as err:
                raise SpecError(f"wrong arguments for {head}: {err}", key="format") from None
        elif rest:
            raise SpecError(f"{head!r} is not a function", key="format")
        else:
            result = _literal(head, dot)
    return result


def _truthy(value: Any) -> bool:
    return bool(value) and value != NO_VALUE


def _parse(template: str) -> list[Any]:
    """The template as a tree: strings, ("expr", text), ("if", expr, then, else), ("range", expr, body)."""
    parts: list[Any] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        parts.append(("action", match.group(2).strip(), bool(match.group(3))))
        pos = match.end()
    parts.append(("text", template[pos:]))
    # Right trims apply to the text after the action.
    for i, part in enumerate(parts):
        if part[0] == "action" and part[2] and i + 1 < len(parts):
            parts[i + 1] = ("text", parts[i + 1][1].lstrip())
    stack: list[tuple[list[Any], Any]] = []
    body: list[Any] = []
    for part in parts:
        if part[0] == "text":
            if part[1]:
                body.append(part[1])
            continue
        action = part[1]
        word = action.split(None, 1)[0] if action else ""
        if word in ("if", "range", "with"):
            node = [word, action[len(word):].strip(), [], []]
            body.append(node)
            stack.append((body, node))
            body = node[2]
        elif word == "else":
            if not stack:
                raise SpecError("{{else}} outside {{if}} or {{range}}", key="format")
            body = stack[-1][1][3]
        elif word == "end":
            if not stack:
                raise SpecError("unexpected {{end}}", key="format")
            body, _ = stack.pop()
        elif action.startswith("/*"):
            continue
        else:
            body.append(("expr", action))
    if stack:
        raise SpecError(f"unexpected EOF: {{{{{stack[-1][1][0]}}}}} has no {{{{end}}}}", key="format")
    return body


def _render(nodes: list[Any], dot: Any, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, tuple):
            value = _eval(node[1], dot)
            out.append(value if isinstance(value, str) else go_str(value))
        else:
            word, expr, then, other = node
            value = _eval(expr, dot)
            if word == "range":
                items = list(value.values() if isinstance(value, dict) else value or ()) \
                    if _truthy(value) else []
                for item in items:
                    _render(then, item, out)
                if not items:
                    _render(other, dot, out)
            elif _truthy(value):
                _render(then, value if word == "with" else dot, out)
            else:
                _render(other, dot, out)


def render(template: str, value: Any) -> str:
    """``template`` applied to ``value`` (dicts and lists, as JSON gives
    them). Raises SpecError (key "format") for a template it cannot read."""
    return "".join(_rendered(_parse(template), value))


def _rendered(nodes: list[Any], value: Any) -> list[str]:
    out: list[str] = []
    _render(nodes, value, out)
    return out


def table_headers(template: str, names: dict[str, str] | None = None) -> tuple[str, str] | None:
    """For ``table {{.A}}\\t{{.B}}``: (the row template, its header line as
    docker writes it: each field's name in capitals, split at its words;
    ``names`` gives others, e.g. {"ID": "IMAGE ID"}; CONTAINER ID for .ID
    unless told); None when ``template`` is no table."""
    if not template.startswith("table"):
        return None
    row = template[len("table"):].lstrip()
    names = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "CreatedSince": "CREATED", **(names or {})}

    def header(match: re.Match[str]) -> str:
        field = match.group(2).strip().split()[-1].lstrip(".")
        return names.get(field, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field).upper())

    return row, _ACTION.sub(header, row)


def render_table(template: str, rows: list[Any], names: dict[str, str] | None = None) -> str:
    """Rows through ``template``; a ``table`` template gets a header line
    (``names``: see table_headers) and aligned columns (its tabs), as
    docker's --format table does."""
    headed = table_headers(template, names)
    if headed is None:
        nodes = _parse(template)
        return "\n".join("".join(_rendered(nodes, row)) for row in rows)
    row_template, header = headed
    nodes = _parse(row_template.replace("\\t", "\t"))
    lines = [header.replace("\\t", "\t")] + ["".join(_rendered(nodes, row)) for row in rows]
    # As docker's tabwriter (min width 10, padding 3): each cell but a
    # line's last is padded to its column's width.
    cells = [line.split("\t") for line in lines]
    width = max(len(c) for c in cells)
    widths = [max(max((len(c[i]) for c in cells if i < len(c) - 1), default=0) + 3, 10) for i in range(width)]
    return "\n".join(
        "".join(c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)).rstrip()
        for row in cells
    )
