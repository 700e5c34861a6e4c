"""The terminal cases (SPEC.md section 10):

- ``attach_rtt``: ``pylxcore run -it IMAGE sh`` driven through a pty of the
  case's own, as a user's terminal would: the time from one key typed to its
  echo on that terminal (busybox sh's line editing echoes it), median of
  many keys. Baselines in the same run: the same busybox sh on a plain local
  pty (the floor: no container, no relay), and ``podman run -it`` (conmon
  and runc's console socket) when podman is there. The key travels: the
  CLI (raw terminal) -> the attach socket -> the supervisor -> its pty ->
  lxc-execute -> the container's pty -> sh, and the echo back the same way.
- ``idle_supervisors``: the memory of the supervisor of an idle container
  that has the most to do: a healthcheck and a restart policy, and (a second
  fleet) a terminal with its stdin open and one caller attached. The target
  (issue #15: "supervisor memory per idle container ≤ 2 MB") is on the
  supervisor's PSS plus its share of the zygote it was forked from; the note
  gives the host's whole cost per container as the ``fleet`` case counts it,
  liblxc's own monitor process included.
"""

from __future__ import annotations

import json
import os
import pty
import select
import statistics
import sys
import time
from pathlib import Path

from cases import FLEET_SIZE, IDLE, Ctx, _host_side_kb, _pss_kb, _zygote_kb
from podman import IMAGE as PODMAN_IMAGE
from podman import ULIMITS
from timing import Row, absolute, info

from pylxcore.spec.healthcheck import Healthcheck

KEYS = 60  # keys timed per sample
IDLE_FLEET = FLEET_SIZE  # (as the fleet case: each is charged 1/50 of the zygote)


def _read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    out = b""
    end = time.monotonic() + timeout
    while marker not in out:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no {marker!r} on the terminal; it showed {out[-300:]!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: it closed
            chunk = b""
        if not chunk:
            raise EOFError(f"the terminal closed before {marker!r}; it showed {out[-300:]!r}")
        out += chunk
    return out


def _spawn(argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    return pid, fd


def key_rtts(argv: list[str], env: dict[str, str], keys: int = KEYS) -> list[float]:
    """Run ``argv`` (a busybox sh, somewhere) on a new pty; seconds from each
    key typed to its echo. Each timed "x" is then rubbed out (not timed), so
    the line never grows. Ends the shell with ``exit``."""
    pid, fd = _spawn(argv, env)
    try:
        _read_until(fd, b"# ")
        # busybox asks the terminal where its cursor is (ESC [6n); a terminal answers.
        os.write(fd, b"\x1b[1;3R")
        time.sleep(0.3)
        while select.select([fd], [], [], 0.1)[0]:
            os.read(fd, 4096)
        out = []
        for _ in range(keys):
            t0 = time.perf_counter()
            os.write(fd, b"x")
            _read_until(fd, b"x", timeout=10)
            out.append(time.perf_counter() - t0)
            os.write(fd, b"\x7f")  # backspace: rubbed out
            _read_until(fd, b"\x08", timeout=10)
            while select.select([fd], [], [], 0.005)[0]:  # (the rest of the rub-out)
                os.read(fd, 4096)
        os.write(fd, b"exit\r")
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return out


def case_attach_rtt(ctx: Ctx) -> list[Row]:
    env = {**os.environ, "TERM": "xterm", "PYLXCORE_ROOT": str(ctx.engine.root)}
    busybox = ctx.rootfs / "bin" / "busybox"
    contenders = {
        "pylxcore run -it": [sys.executable, "-m", "pylxcore", "run", "-it", "--rm", ctx.image, "sh"],
        "local pty": [str(busybox if busybox.exists() else Path("/usr/bin/busybox")), "sh"],
    }
    if not ctx.podman.reason and ctx.podman.run("image", "exists", PODMAN_IMAGE, check=False).returncode != 0:
        ctx.podman.setup(ctx.rootfs)  # (the registry case empties podman's store for its pulls)
    if not ctx.podman.reason:
        contenders["podman run -it"] = ctx.podman.argv(
            "run", "-it", "--rm", "--network", "none", *ULIMITS, PODMAN_IMAGE, "sh"
        )
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    failed: dict[str, str] = {}
    for _ in range(max(1, ctx.slow)):  # round-robin: the shared machine's load lands on each alike
        for name, argv in contenders.items():
            if name in failed:
                continue
            try:
                samples[name] += key_rtts(argv, env)
            except (TimeoutError, EOFError, OSError) as err:
                failed[name] = str(err)
    if "pylxcore run -it" in failed:
        raise RuntimeError(failed["pylxcore run -it"])
    med = {name: statistics.median(values) for name, values in samples.items() if values}
    ours = med["pylxcore run -it"]
    n = len(samples["pylxcore run -it"])
    rows = [
        absolute("attach_rtt", f"run -it: a key to its echo (median of {n})", ours, "s", 0.005,
                 "local pty, same busybox sh", med["local pty"],
                 note=f"p90 {sorted(samples['pylxcore run -it'])[int(n * 0.9)] * 1e3:.2f} ms"),
    ]
    if "podman run -it" in med:
        rows.append(info("attach_rtt", "run -it: a key to its echo", ours, "podman run -it",
                         med["podman run -it"]))
    elif not ctx.podman.reason:
        rows.append(Row("attach_rtt", "podman run -it", None, note=f"failed: {failed.get('podman run -it')}"))
    return rows


def _fleet_kb(ctx: Ctx, fleet: list) -> tuple[float, float]:  # type: ignore[type-arg]
    """Per container, in KB (PSS): (supervisor + monitor + zygote share,
    supervisor + zygote share)."""
    time.sleep(1.0)  # the last ones done starting, their first allocations made
    sides = [_host_side_kb(c) for c in fleet]
    shims = {int(json.loads((c.dir / "state.json").read_text())["shim_pid"]) for c in fleet}
    zygote = _zygote_kb(ctx, shims)
    total = (sum(h for h, _ in sides) + zygote) / len(fleet)
    return total, (sum(_pss_kb(pid) for pid in shims) + zygote) / len(fleet)


def case_idle_supervisors(ctx: Ctx) -> list[Row]:
    check = Healthcheck(["CMD", "true"], interval=1.0, timeout=5.0)
    runs: dict[str, list[tuple[float, float]]] = {"health": [], "tty": []}
    for _ in range(max(1, ctx.slow)):
        fleet = [
            ctx.engine.containers.run(ctx.image, IDLE, detach=True, restart="always", healthcheck=check)
            for _ in range(IDLE_FLEET)
        ]
        try:
            time.sleep(2.5)  # a few checks have run (each one an lxc-attach the supervisor waited for)
            runs["health"].append(_fleet_kb(ctx, fleet))
        finally:
            for c in fleet:
                c.remove(force=True)
        fleet = [
            ctx.engine.containers.run(ctx.image, ["sh"], detach=True, tty=True, stdin=True)
            for _ in range(IDLE_FLEET)
        ]
        streams = []
        try:
            for c in fleet:  # one caller each, typing once: the attach path has run
                s = c.attach()
                s.write(b"echo hi\r")
                s.read_until(b"hi\r\n")
                streams.append(s)
            runs["tty"].append(_fleet_kb(ctx, fleet))
        finally:
            for s in streams:
                s.detach()
            for c in fleet:
                c.remove(force=True)
    what = "supervisor memory per idle container: its PSS + 1/50 of the zygote's"

    def row(kind: str, measure: str) -> Row:
        total = statistics.median(t for t, _ in runs[kind]) / 1024
        supervisor = statistics.median(a for _, a in runs[kind]) / 1024
        return absolute("idle_supervisors", f"{what}; {measure}", supervisor, "MB", 2,
                        note=f"host memory per container, liblxc's monitor included: {total:.2f} MB")

    return [row("health", "healthcheck every 1 s, restart always"),
            row("tty", "-it, stdin open, one caller attached")]
