"""The README demo: build the offline web-server image, run three containers
from it on the host network (each on its own loopback port), fetch each page,
show exec, logs and limits, then stop and remove everything.

Run as root:  .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pylxcore import Engine, Image, Limits

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, path: str = "/") -> str:
    # The server needs a moment to listen; retry briefly (loopback only).
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}")


def main() -> int:
    root = os.environ.get("PYLXCORE_ROOT") or tempfile.mkdtemp(prefix="pylxcore-demo-")
    engine = Engine(root=root)
    image = Image.load(HERE / "web" / "image.yaml")
    print(f"== building {image.name} in {engine.root}")
    built = engine.images.build(image, progress=True)
    print("== rebuilding: every step comes from the cache")
    again = engine.images.build(image)
    assert all(step.cached for step in again.layers), "the rebuild should be fully cached"
    print(f"   {again!r}")

    containers = []
    try:
        for i in range(3):
            port = free_port()
            c = engine.containers.run(
                built.id,
                name=f"demo-web{i}",
                detach=True,
                network="host",
                env={"PORT": str(port)},
                limits=Limits(memory="32M"),
            )
            containers.append((c, port))
            print(f"== {c.name} serves 127.0.0.1:{port}")
        for c, port in containers:
            page = fetch(port)
            print(f"   {c.name}: {page.splitlines()[2]}  health={fetch(port, '/health').strip()}")
        c, _ = containers[0]
        result = c.exec(["sh", "-c", "hostname; id -u; ls /www"])
        print(f"== exec in {c.name}: exit {result.exit_code}\n{result.stdout.decode()}", end="")
        stats = c.stats()
        print(f"== stats: memory {stats.memory_bytes} of {stats.memory_limit_bytes} bytes, pids {stats.pids}")
        code = engine.containers.run(
            built.id, ["sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"], remove=True
        )
        print(f"== a one-off run: {code}")
    finally:
        for c, _ in containers:
            c.stop(timeout=5)
            print(f"== {c.name} stopped with exit code {c.exit_code}; logs: {len(c.logs())} bytes")
            c.remove()
        removed = engine.images.remove(image.name)
        engine.prune()
        print(f"== removed everything: {len(removed)} image records and layers")
    if not os.environ.get("PYLXCORE_ROOT"):
        import shutil

        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
