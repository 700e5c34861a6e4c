"""Every example runs as it stands (as a user would run it) and cleans up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pylxcore import Engine

EXAMPLES = Path(__file__).parent.parent / "examples"

EXPECT = {
    "quickstart.py": [b"Hello from a pylxcore container", b"health=ok", b"exit code 143", b"exit_code=3"],
    "limits_and_oom.py": [b"memory hog: exit code 137", b"oom_killed=True", b"still manageable: yes"],
    "throwaway_runner.py": [b"PASS adds", b"PASS sees-no-other-case", b"FAIL fails"],
    "debian_web.py": [
        b"rebuilt from cache: True",
        b"Hello from mini_httpd on Debian",
        b"Debian GNU/Linux 12",
    ],
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECT)
    assert (EXAMPLES / "notebook.ipynb").exists()


@pytest.mark.parametrize("script", sorted(EXPECT))
def test_example_runs(engine: Engine, script: str) -> None:
    env = dict(os.environ, PYLXCORE_ROOT=str(engine.root))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, env=env, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    for needle in EXPECT[script]:
        assert needle in proc.stdout, f"{needle!r} not in the output of {script}:\n{proc.stdout.decode()}"
    assert engine.containers.list(all=True) == [], f"{script} left containers behind"


def test_notebook_runs_headless(engine: Engine) -> None:
    """examples/notebook.ipynb, executed by a real Jupyter kernel (nbclient)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    os.environ["PYLXCORE_ROOT"] = str(engine.root)
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
        ).execute()
    finally:
        del os.environ["PYLXCORE_ROOT"]
    html = [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "data" in out and "text/html" in out["data"]
    ]
    assert len(html) >= 3, "Image, BuiltImage and Container should render as HTML"
    assert any("notebook/hello:1" in h and "<table" in h for h in html)
    assert any("nb-demo" in h and "running" in h for h in html)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "hello from a notebook" in text and "exit code: 143" in text and "clean" in text
    # The pull from the notebook's own registry, with its progress display: tqdm's
    # text bar, or its widget where ipywidgets is installed.
    widgets = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert "Pulled 127.0.0.1:" in text and (("100%" in text and "B/s" in text) or widgets)
    assert engine.containers.list(all=True) == []
