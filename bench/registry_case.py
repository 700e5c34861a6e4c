"""The registry case: pull and push of a ~200 MB image, pylxcore against podman,
both talking to one docker-registry of the bench's own on 127.0.0.1.

Each run starts fresh registries (nothing cached on the registry side) and
fresh stores (nothing cached on the client side), so every byte moves:

- pull: ``engine.images.pull`` into an empty root vs ``podman pull`` into an
  empty store, of the same image;
- push: the pulled image to an empty registry: ``engine.images.push`` vs
  ``podman push`` (pylxcore sends the blobs it kept; podman compresses again).

The image is pushed to the source registry by pylxcore, once per bench run:
its one big layer (random files) is a gzip blob of stored blocks (see
pylxcore.transfer.pgzip), which both pullers then fetch.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from timing import Row, at_most, medians

from pylxcore import Engine

REGISTRY_BIN = "/usr/bin/docker-registry"


class LocalRegistry:
    """docker-registry on 127.0.0.1 with a free port and a storage dir of its own; stop() by pid."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.host = f"127.0.0.1:{port}"
        config = workdir / "config.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(workdir / "registry.log", "wb") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    why = f"docker-registry did not start (see {workdir / 'registry.log'})"
                    raise RuntimeError(why) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _one_run(ctx: Any, ref: str, work: Path, i: int, registries: list[LocalRegistry]) -> dict[str, float]:
    """One pull by each from ``ref`` into empty stores, then one push by each to empty registries."""
    ctx.podman.run("rmi", "--all", "--force", check=False)
    root = work / f"px-{i}"
    engine = Engine(root=root)
    sinks = [LocalRegistry(work / f"sink-{i}-{who}") for who in ("px", "podman")]
    registries += sinks

    def px_pull() -> float:
        t0 = time.perf_counter()
        engine.images.pull(ref)
        return time.perf_counter() - t0

    def podman_pull() -> float:
        t0 = time.perf_counter()
        ctx.podman.run("pull", "--tls-verify=false", "-q", ref)
        return time.perf_counter() - t0

    def px_push() -> float:
        t0 = time.perf_counter()
        engine.images.push(ref, f"{sinks[0].host}/bench/big:1")
        return time.perf_counter() - t0

    def podman_push() -> float:
        t0 = time.perf_counter()
        ctx.podman.run("push", "--tls-verify=false", ref, f"docker://{sinks[1].host}/bench/big:1")
        return time.perf_counter() - t0

    try:
        # No warm-up: a second pull into the same store would move nothing.
        m = medians({"px_pull": px_pull, "podman_pull": podman_pull}, 1, warmup=0)
        m |= medians({"px_push": px_push, "podman_push": podman_push}, 1, warmup=0)
    finally:
        engine.close()
        shutil.rmtree(root, ignore_errors=True)
        for sink in sinks:
            sink.stop()
    return m


def pull_push(ctx: Any, image: str, size: int) -> list[Row]:
    """Rows for pull and push of ``image`` (``size`` bytes) by pylxcore and podman."""
    if not os.path.exists(REGISTRY_BIN):
        return [Row("registry", "pull/push", None, note="docker-registry is not installed")]
    if ctx.podman.reason:
        return [Row("registry", "pull/push", None, note=f"podman not measured: {ctx.podman.reason}")]
    work = ctx.dir / "registry-case"
    runs: list[dict[str, float]] = []
    registries: list[LocalRegistry] = []
    try:
        source = LocalRegistry(work / "source")
        registries.append(source)
        ref = f"{source.host}/bench/big:1"
        ctx.engine.images.push(image, ref)
        for i in range(ctx.slow):
            runs.append(_one_run(ctx, ref, work, i, registries))
    except (RuntimeError, subprocess.CalledProcessError, OSError) as err:
        return [Row("registry", "pull/push", None, note=f"not measured: {err}")]
    finally:
        for reg in registries:
            reg.stop()
        ctx.podman.run("rmi", "--all", "--force", check=False)
        shutil.rmtree(work, ignore_errors=True)

    def median(key: str) -> float:
        values = sorted(r[key] for r in runs)
        return values[len(values) // 2]

    label = f"a {size / 1e6:.0f} MB image, local registry"
    return [
        at_most("registry", f"engine.images.pull() of {label}", median("px_pull"),
                "podman pull", median("podman_pull"), 1.2),
        at_most("registry", f"engine.images.push() of {label} to an empty registry", median("px_push"),
                "podman push", median("podman_push"), 1.2),
    ]
