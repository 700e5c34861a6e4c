"""The seed's story on Debian: base OS from debootstrap, a web server from
apt-get, a file copied in; then serve the page on a loopback port and fetch it.

Run as root:  .venv/bin/python examples/debian_web.py
(about a minute the first time: debootstrap and apt-get; seconds from the cache)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from quickstart import fetch, free_port

from pylxcore import Engine, Image

HERE = Path(__file__).parent


def main() -> int:
    root = os.environ.get("PYLXCORE_ROOT") or tempfile.mkdtemp(prefix="pylxcore-debian-")
    engine = Engine(root=root)
    image = Image.load(HERE / "debian-web" / "image.yaml")
    built = engine.images.build(image, progress=True)
    again = engine.images.build(image)
    print(f"== rebuilt from cache: {all(s.cached for s in again.layers)}")
    port = free_port()
    with engine.containers.run(built.id, detach=True, network="host", env={"PORT": str(port)}) as c:
        page = fetch(port)
        print(f"== {c.name} on 127.0.0.1:{port}: {page.splitlines()[-1]}")
        print(c.exec(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]).stdout.decode(), end="")
    if not os.environ.get("PYLXCORE_ROOT"):
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
