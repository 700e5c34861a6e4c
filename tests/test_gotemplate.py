"""The Go-template subset of --format and inspect -f (pure: no containers).

Expected strings are what Go's text/template (docker 20.10) prints for the
same template and document."""

from __future__ import annotations

import pytest

from pylxcore.cli.gotemplate import render, render_table, table_headers
from pylxcore.errors import SpecError

DOC = {
    "State": {"Status": "exited", "ExitCode": 3, "Running": False},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"z": "last", "a": "first"}, "Cmd": None},
    "Name": "/web",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.State.Status}} {{.State.ExitCode}}", "exited 3"),
        ("{{.State.Running}}", "false"),
        ("{{json .Config.Env}}", '["A=1","B=2"]'),
        ("{{.Config.Env | json}}", '["A=1","B=2"]'),
        ("{{.Config.Labels}}", "map[a:first z:last]"),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.Config.Cmd}}", "<nil>"),
        ("{{.Config.Missing}}", "<no value>"),
        ("{{index .Config.Labels \"z\"}}", "last"),
        ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
        ("{{range .Config.Nope}}x{{else}}none{{end}}", "none"),
        ("{{if .State.Running}}up{{else}}down{{end}}", "down"),
        ("{{with .State}}{{.Status}}{{end}}", "exited"),
        ("{{join .Config.Env \",\"}}", "A=1,B=2"),
        ("{{upper .State.Status}}", "EXITED"),
        ("a {{- .Name -}} b", "a/webb"),
        ("{{len .Config.Env}}", "2"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, DOC) == expected


def test_json_of_the_whole_document() -> None:
    assert render("{{json .State}}", DOC) == '{"Status":"exited","ExitCode":3,"Running":false}'


@pytest.mark.parametrize(
    "template", ["{{if .A}}x", "{{end}}", "{{nosuch .A}}", "{{.Name.Sub.Deeper}}x{{else}}"]
)
def test_bad_templates_are_spec_errors(template: str) -> None:
    with pytest.raises(SpecError):
        render(template, DOC)


def test_table_headers_and_alignment() -> None:
    assert table_headers("{{.Names}}") is None
    rows = [{"ID": "abc", "Names": "web", "Status": "Up"},
            {"ID": "defghi", "Names": "db", "Status": "Exited (0)"}]
    assert render_table("table {{.ID}}\t{{.Names}}\t{{.Status}}", rows).splitlines() == [
        "CONTAINER ID   NAMES     STATUS",
        "abc            web       Up",
        "defghi         db        Exited (0)",
    ]
    assert render_table("{{.Names}}:{{.Status}}", rows) == "web:Up\ndb:Exited (0)"
