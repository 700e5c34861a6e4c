"""The parity table of docs/cli.md ("## Docker parity") against the code:
every ``docker …`` row names a command of the parser and lists exactly its
flags; every command and flag of the parser has its row; and each row's
"Run as" command runs, top to bottom, against real containers."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pylxcore import Engine
from pylxcore.cli.parser import CONTAINER_GROUP, Parser, build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "cli.md"
GLOBAL = {"-h", "--help", "--root", "--debug"}
GROUPS = ("image", "system", "volume", "network")  # docker's groups whose subcommands have rows of their own


def rows() -> list[list[str]]:
    """The table's rows, as their four cells."""
    text = DOCS.read_text()
    section = text[text.index("## Docker parity\n"):]
    section = section[: section.index("\n## ", 1)]
    out = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| docker |", "| --- |")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a parity row has {len(cells)} cells, not 4: {line}"
        out.append(cells)
    return out


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def subcommands(parser: Parser) -> dict[str, Parser]:
    """A group's subcommands (``image ls``, …) by name."""
    for action in parser.arguments:
        if isinstance(action, argparse._SubParsersAction):  # (argparse's own class for them)
            return dict(action.choices)
    return {}


def flags(parser: Parser) -> set[str]:
    return {o for a in parser.arguments for o in a.option_strings} - GLOBAL


def docker_command(cell: str) -> list[str] | None:
    """``docker image ls`` -> ["image", "ls"]; None for a row that is no docker command."""
    match = re.fullmatch(r"`docker ([a-z ]+?)`", cell)
    return match.group(1).split() if match else None


def test_table_and_parser_agree() -> None:
    parser = build_parser()
    covered: set[tuple[str, ...]] = set()
    for docker, documented, _why, run_as in rows():
        words = docker_command(docker)
        pylxcore_only = re.fullmatch(r"— \(`pylxcore ([a-z]+)`\)", docker)
        if pylxcore_only:
            assert pylxcore_only.group(1) in parser.commands, docker
            covered.add((pylxcore_only.group(1),))
            continue
        if words is None:  # exit codes, unknown flags, `docker container SUBCOMMAND` (below)
            assert run_as.startswith("`pylxcore "), f"{docker}: a row that is no command is run: {run_as}"
            continue
        if documented == "—":  # docker's, not (yet) pylxcore's: the row must go once it is
            assert words[0] not in parser.commands, f"{docker} exists now: give its row its flags"
            continue
        assert words != ["container"], "`docker container` rows: SUBCOMMAND, and prune"
        command = parser.commands.get(words[0])
        assert command is not None, f"{docker}: pylxcore has no command {words[0]!r}"
        for word in words[1:]:
            command = subcommands(command).get(word)
            assert command is not None, f"{docker}: pylxcore has no {' '.join(words)!r}"
        listed, has = {s for s in spans(documented) if s.startswith("-")}, flags(command)
        drift = f"not in the table: {sorted(has - listed)}; only in the table: {sorted(listed - has)}"
        assert listed == has, f"{docker}: {drift}"
        covered.add(tuple(words))
    for docker, documented, _why, _run_as in rows():
        if docker == "`docker container SUBCOMMAND`":
            subs = subcommands(parser.commands["container"])
            assert set(spans(documented)) == set(CONTAINER_GROUP) == set(subs), documented
            for name in CONTAINER_GROUP:
                if name != "prune":  # (its own row)
                    same = {"ls": "ps"}.get(name, name)
                    assert flags(subs[name]) == flags(parser.commands[same]), f"container {name}"
            covered.add(("container",))
    for name, command in parser.commands.items():
        if name in GROUPS:
            for sub in subcommands(command):
                assert (name, sub) in covered, f"no parity row for `docker {name} {sub}`"
        else:
            assert (name,) in covered, f"no parity row for `docker {name}`"
    assert ("container", "prune") in covered


def test_every_help_renders() -> None:
    # (argparse expands % in help texts: "CPU %" once broke every --help)
    parser = build_parser()
    todo: list[Parser] = [parser]
    while todo:
        command = todo.pop()
        assert command.format_help()
        todo += subcommands(command).values()


def test_rows_name_their_tests() -> None:
    for docker, _documented, _why, run_as in rows():
        if run_as in ("—", "") or run_as.startswith("`pylxcore "):
            continue
        (path,) = spans(run_as)
        words = docker_command(docker)
        assert words is not None and (REPO / path).is_file(), run_as
        assert words[0] in (REPO / path).read_text(), f"{path} does not run {words[0]}"


def demo_yaml() -> str:
    match = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert match, "docs/cli.md has no yaml block"
    return match.group(1)


@pytest.mark.slow
def test_every_row_runs(engine: Engine, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "demo").mkdir(parents=True)
    (work / "demo" / "image.yaml").write_text(demo_yaml())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pylxcore").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pylxcore "$@"\n')
    (bindir / "pylxcore").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYLXCORE_ROOT": str(engine.root)}
    ran = 0
    for docker, _documented, _why, run_as in rows():
        if not run_as.startswith("`pylxcore "):
            continue
        (command,) = spans(run_as)
        expected = re.search(r"#\s*exit (\d+)", command)
        proc = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        why = f"{docker}: {command!r}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.returncode == (int(expected.group(1)) if expected else 0), why
        ran += 1
    assert ran >= 60
