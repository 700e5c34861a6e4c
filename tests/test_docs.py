"""The user guide in docs/ is executable, and checked against the code.

* Every ```python block of every page (docs/*.md) runs: a page's blocks run in
  order, in one namespace, in a subprocess of their own, with PYLXCORE_ROOT a
  fresh store (the ``engine`` fixture's, checked for leftovers afterwards) and
  relative paths like ``examples/web/image.yaml`` resolving from the repository
  root. A block followed by a line "prints" and a plain ``` block must print
  exactly that; ``...`` in the expected text stands for any text (ids, times).
  A block may be skipped only with ``<!-- not-run: REASON -->`` right before
  it, where REASON names a file of the repository that holds every line of it
  (an example the suite runs).
* The guide's pages (GUIDE) hold no other code than python and yaml, plus those
  output blocks. Each ```yaml block is a whole image that ``Image.from_yaml``
  loads as ``image.yaml`` in the build context ``examples/web``; or, followed
  by a line "raises" and a plain block, raises SpecError with that message.
* docs/api.md names real objects: each ``### Name`` or ``### Name(params)``
  heading resolves, with exactly that signature; the tables under it list
  real parameters (signature headings) or attributes (the others); every name
  pylxcore exports and every public member of the main classes is documented.
* docs/yaml.md's tables list exactly the keys the YAML reader accepts;
  docs/security.md lists exactly the attempts of tests/test_escape.py.
* Links between pages and to repository files resolve, anchors included, and
  docs/index.md links every page.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import pylxcore
from pylxcore import Engine, Image, SpecError

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
GUIDE = ["index.md", "concepts.md", "yaml.md", "api.md", "security.md", "troubleshooting.md"]
YAML_CONTEXT = REPO / "examples" / "web"

_FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->$")
_EXPECT = re.compile(r"^(prints|raises):?$")


class Block(NamedTuple):
    page: str
    line: int  # 1-based line of the block's first line of code
    lang: str
    code: str
    not_run: str | None  # the reason, when marked <!-- not-run: ... -->
    expect: str | None  # "prints" or "raises" when an output block follows
    expected: str | None


def parse_blocks(page: str) -> list[Block]:
    """The fenced code blocks of ``docs/page``; output blocks are attached to the block before them."""
    lines = (DOCS / page).read_text().splitlines()
    raw: list[tuple[int, int, str, str]] = []  # (start line index, end line index, lang, code)
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, lang = m.group(1), m.group(2), m.group(3)
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            j += 1
        assert j < len(lines), f"docs/{page}:{i + 1}: code block never closed"
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        raw.append((i, j, lang, "\n".join(body) + "\n"))
        i = j + 1
    blocks: list[Block] = []
    k = 0
    while k < len(raw):
        start, end, lang, code = raw[k]
        before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = _NOT_RUN.match(before)
        expect = expected = None
        after = [n for n in range(end + 1, len(lines)) if lines[n].strip()]
        if k + 1 < len(raw) and after and _EXPECT.match(lines[after[0]].strip()):
            nxt = raw[k + 1]
            if len(after) > 1 and after[1] == nxt[0] and nxt[2] in ("", "text"):
                expect = _EXPECT.match(lines[after[0]].strip()).group(1)  # type: ignore[union-attr]
                expected = nxt[3]
                k += 1
        reason = marker.group(1) if marker else None
        blocks.append(Block(page, start + 2, lang, code, reason, expect, expected))
        k += 1
    return blocks


def pages() -> list[str]:
    return sorted(p.name for p in DOCS.glob("*.md"))


def matches(expected: str, actual: str) -> bool:
    """``actual == expected``, where each ``...`` in ``expected`` matches any text."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, re.DOTALL) is not None


# --------------------------------------------------------------------------
# Running the python blocks
# --------------------------------------------------------------------------

# Runs in the subprocess: argv[1] is the JSON list of blocks, argv[2] the result file.
RUNNER = r"""
import contextlib, io, json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
results = []
for b in blocks:
    out = io.StringIO()
    error = None
    try:
        with contextlib.redirect_stdout(out):
            # Blank lines first, so that tracebacks give the line in the page.
            exec(compile("\n" * (b["line"] - 1) + b["code"], b["page"], "exec"), namespace)
    except BaseException:
        error = traceback.format_exc()
    results.append({"where": f'{b["page"]}:{b["line"]}', "out": out.getvalue(), "error": error})
    if error:
        break
with open(sys.argv[2], "w") as fh:
    json.dump(results, fh)
"""


def _scratch_cwd(tmp_path: Path) -> Path:
    """A working directory whose entries are the repository's own (symlinks): a
    page's relative paths read as from the repository root, and whatever a page
    writes (docs/interop.md writes exports/) stays out of the repository."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for entry in REPO.iterdir():
        if entry.name != ".git":
            (cwd / entry.name).symlink_to(entry)
    return cwd


def python_pages() -> list[str]:
    return [p for p in pages() if any(b.lang == "python" and not b.not_run for b in parse_blocks(p))]


@pytest.mark.parametrize("page", python_pages())
def test_page_runs(engine: Engine, tmp_path: Path, page: str) -> None:
    blocks = [b for b in parse_blocks(page) if b.lang == "python" and not b.not_run]
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([{"page": f"docs/{page}", "line": b.line, "code": b.code} for b in blocks]))
    result_file = tmp_path / "results.json"
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYLXCORE_ROOT=str(engine.root), PYTHONPATH=pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(spec), str(result_file)],
        cwd=_scratch_cwd(tmp_path), env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0 and result_file.exists(), f"the runner failed:\n{proc.stdout}\n{proc.stderr}"
    results = json.loads(result_file.read_text())
    for block, res in zip(blocks, results):
        assert res["error"] is None, f"{res['where']} raised:\n{res['error']}\nafter printing:\n{res['out']}"
        if block.expect == "prints":
            assert matches(block.expected or "", res["out"]), (
                f"{res['where']} printed:\n{res['out']}\nbut the page says:\n{block.expected}"
            )
    assert len(results) == len(blocks)
    left = [c.name for c in engine.containers.list(all=True)]
    assert left == [], f"docs/{page} left containers behind: {left}"


def test_not_run_blocks_are_copies_of_tested_files() -> None:
    for page in pages():
        for b in parse_blocks(page):
            if b.not_run is None:
                continue
            named = [w.strip("`.,;:()") for w in b.not_run.split()]
            files = [REPO / w for w in named if "/" in w and (REPO / w).is_file()]
            assert files, f"docs/{page}:{b.line}: not-run must name the file it is taken from: {b.not_run!r}"
            source = {ln.strip() for f in files for ln in f.read_text().splitlines()}
            missing = [ln for ln in b.code.splitlines() if ln.strip() and ln.strip() not in source]
            assert not missing, f"docs/{page}:{b.line}: lines not in {files}: {missing}"


def test_expected_output_follows_only_python_or_yaml() -> None:
    for page in GUIDE:
        for b in parse_blocks(page):
            if b.expect == "prints":
                assert b.lang == "python", f"docs/{page}:{b.line}: 'prints' after a {b.lang} block"
            if b.expect == "raises":
                assert b.lang == "yaml", f"docs/{page}:{b.line}: 'raises' after a {b.lang} block"


# --------------------------------------------------------------------------
# The guide's pages: only code that is checked
# --------------------------------------------------------------------------


@pytest.mark.parametrize("page", GUIDE)
def test_guide_page_has_only_checked_code(page: str) -> None:
    assert (DOCS / page).exists(), f"docs/{page} is missing"
    for b in parse_blocks(page):
        assert b.lang in ("python", "yaml"), (
            f"docs/{page}:{b.line}: a ```{b.lang or '(plain)'} block nothing runs; use python or yaml,"
            " or show it as the output ('prints') of one"
        )


def _yaml_blocks() -> list[Block]:
    return [b for page in GUIDE if (DOCS / page).exists() for b in parse_blocks(page) if b.lang == "yaml"]


@pytest.mark.parametrize("block", _yaml_blocks(), ids=lambda b: f"{b.page}:{b.line}")
def test_yaml_block(block: Block) -> None:
    where = f"docs/{block.page}:{block.line}"
    if block.expect == "raises":
        with pytest.raises(SpecError) as info:
            Image.from_yaml(block.code, path="image.yaml", context=str(YAML_CONTEXT))
        assert matches((block.expected or "").strip(), str(info.value)), (
            f"{where}: the error is\n{info.value}\nbut the page says\n{block.expected}"
        )
    else:
        try:
            image = Image.from_yaml(block.code, path="image.yaml", context=str(YAML_CONTEXT))
        except SpecError as err:
            pytest.fail(f"{where}: does not load: {err}")
        assert Image.from_yaml(image.to_yaml()) == image


# --------------------------------------------------------------------------
# Headings, tables, links
# --------------------------------------------------------------------------


def sections(page: str | Path) -> list[tuple[int, str, list[str]]]:
    """(level, heading text, body lines) of each heading of a page, code blocks skipped."""
    out: list[tuple[int, str, list[str]]] = []
    in_code = False
    for line in (DOCS / page).read_text().splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            continue
        m = None if in_code else re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if m:
            out.append((len(m.group(1)), m.group(2), []))
        elif out and not in_code:
            out[-1][2].append(line)
    return out


def table_names(body: list[str]) -> list[str]:
    """The first cells of table rows that are one code span: ``| `name` | ...``."""
    names = []
    for line in body:
        m = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if m:
            names.append(m.group(1))
    return names


_NO_OBJECT = object()  # an instance attribute: documented, but no object to look at


def _heading_object(text: str) -> tuple[str, Any, str | None]:
    """(dotted name, the object, the parameter text or None) of an api.md heading."""
    m = re.fullmatch(r"([A-Za-z_][\w.]*)(\(.*\))?", text)
    assert m, f"api.md heading {text!r} is not 'Name' or 'Name(params)'"
    dotted, params = m.group(1), m.group(2)
    first, *rest = dotted.split(".")
    modules = ("images", "runtime.containers", "runtime.check", "network.collection", "volumes")
    homes = [pylxcore, *(importlib.import_module(f"pylxcore.{m}") for m in modules)]
    obj = next((getattr(mod, first) for mod in homes if hasattr(mod, first)), _NO_OBJECT)
    assert obj is not _NO_OBJECT, f"api.md: {first!r} is not a name in pylxcore"
    for attr in rest:
        assert has_member(obj, attr), f"api.md: {dotted!r}: {obj!r} has no member {attr!r}"
        obj = getattr(obj, attr, _NO_OBJECT)
    return dotted, obj, params


def has_member(cls: Any, name: str) -> bool:
    """An attribute, property, method, attrs field, annotated field, or ``self.name =`` in __init__."""
    if hasattr(cls, name):
        return True
    if not inspect.isclass(cls):
        return False
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return True
        init = klass.__dict__.get("__init__")
        if init is not None:
            try:
                src = inspect.getsource(init)
            except (OSError, TypeError):
                continue
            if re.search(rf"\bself\.{re.escape(name)}\b\s*(:[^=\n]*)?=[^=]", src):
                return True
    return False


def rendered_signature(obj: Any) -> str:
    sig = inspect.signature(obj)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    if params and params[0].name == "self":
        params = params[1:]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def api_headings() -> list[tuple[str, Any, str | None, list[str]]]:
    out = []
    for level, text, body in sections("api.md"):
        if level == 3:
            dotted, obj, params = _heading_object(text)
            out.append((dotted, obj, params, body))
    return out


def test_api_headings_name_real_objects_with_their_signatures() -> None:
    headings = api_headings()
    assert len(headings) > 50
    for dotted, obj, params, body in headings:
        if params is not None:
            assert callable(obj), f"api.md: {dotted} has parameters but is not callable"
            assert params == rendered_signature(obj), (
                f"api.md: {dotted}{params} but the code says {dotted}{rendered_signature(obj)}"
            )
            names = set(inspect.signature(obj).parameters)
            for name in table_names(body):
                ok = name.lstrip("*") in names or (inspect.isclass(obj) and has_member(obj, name))
                assert ok, f"api.md: {dotted} has no parameter {name!r}"
        else:
            for name in table_names(body):
                assert inspect.isclass(obj), f"api.md: a table of members under {dotted}, which is no class"
                assert has_member(obj, name.split("(")[0]), f"api.md: {dotted} has no member {name!r}"


def _documented() -> set[str]:
    names = set()
    for dotted, obj, _params, body in api_headings():
        names.add(dotted)
        if inspect.isclass(obj):
            names.update(f"{dotted}.{n.split('(')[0]}" for n in table_names(body))
    return names


def test_api_documents_every_export() -> None:
    documented = _documented()
    missing = [n for n in pylxcore.__all__ if n != "__version__" and n not in documented]
    assert not missing, f"docs/api.md does not document {missing}"


MAIN_CLASSES = {
    "Engine": pylxcore.Engine,
    "ImageCollection": importlib.import_module("pylxcore.images").ImageCollection,
    "BuiltImage": pylxcore.BuiltImage,
    "ContainerCollection": importlib.import_module("pylxcore.runtime.containers").ContainerCollection,
    "Container": pylxcore.Container,
    "ExecStream": pylxcore.ExecStream,
    "Image": pylxcore.Image,
    "Layer": pylxcore.Layer,
    "Limits": pylxcore.Limits,
    "Mount": pylxcore.Mount,
}


@pytest.mark.parametrize("name", sorted(MAIN_CLASSES))
def test_api_documents_every_public_member(name: str) -> None:
    cls = MAIN_CLASSES[name]
    documented = _documented()
    members = {m for k in cls.__mro__[:-1] if k.__module__.startswith("pylxcore") for m in vars(k)}
    members |= {f.name for f in getattr(cls, "__attrs_attrs__", ())}
    public = sorted(m for m in members if not m.startswith("_") and not m.startswith("__"))
    missing = [m for m in public if f"{name}.{m}" not in documented]
    assert not missing, f"docs/api.md does not document {name}: {missing}"


def test_yaml_reference_lists_every_key() -> None:
    from pylxcore.spec import yaml as spec_yaml

    tables = {text: table_names(body) for _level, text, body in sections("yaml.md")}
    expected = {
        "Top-level keys": spec_yaml.TOP_KEYS,
        "Layers": spec_yaml.LAYER_KEYS,
        "copy": spec_yaml.COPY_KEYS,
        "Limits": spec_yaml.LIMIT_KEYS,
    }
    for heading, keys in expected.items():
        assert heading in tables, f"docs/yaml.md has no section {heading!r}"
        listed = tables[heading]
        assert sorted(listed) == sorted(keys), f"docs/yaml.md, {heading}: {listed} != {keys}"


def test_security_lists_the_escape_suite() -> None:
    tree = ast.parse((REPO / "tests" / "test_escape.py").read_text())
    attempts = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ATTEMPTS" for t in node.targets)
    )
    tables = {text: table_names(body) for _level, text, body in sections("security.md")}
    listed = tables.get("The escape suite", [])
    assert sorted(listed) == sorted([*attempts, "ptrace_host"]), listed


def _anchors(page: str) -> set[str]:
    out = set()
    for _level, text, _body in sections(page):
        slug = re.sub(r"[^\w\- ]", "", text.lower().replace("`", "")).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", GUIDE)
def test_links_resolve(page: str) -> None:
    text = (DOCS / page).read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (DOCS / path).resolve() if path else DOCS / page
        assert file.exists(), f"docs/{page}: link to {target!r}: no such file"
        if anchor:
            in_docs = file.parent == DOCS and file.suffix == ".md"
            assert in_docs, f"docs/{page}: anchor outside docs/: {target!r}"
            assert anchor in _anchors(file.name), f"docs/{page}: link to {target!r}: no such heading"


def test_index_links_every_page() -> None:
    text = (DOCS / "index.md").read_text()
    linked = {t.partition("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)}
    missing = [p for p in pages() + ["cli.md", "interop.md"] if p != "index.md" and p not in linked]
    assert not missing, f"docs/index.md does not link {missing}"


def test_yaml_page_shows_the_web_example_as_it_is() -> None:
    example = (REPO / "examples" / "web" / "image.yaml").read_text()
    shown = [b.code for b in parse_blocks("yaml.md")]
    assert example in shown, "docs/yaml.md: examples/web/image.yaml has changed; show it as it is"
