"""The benchmark cases: one function each, returning the rows of the table.

Every case measures pylxcore and its baselines in the same run, round-robin
where it can (see ``timing.medians``), and cleans up what it made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from baselines import LXCTools, RawLXC, children, floor_argv, wait_for_file
from docker import Docker, dockerfile
from podman import Podman, containerfile
from timing import Row, Sample, absolute, at_most, clocked, faster, info, medians
from transfer import case_export_memory, case_export_oci, case_export_xz

from pylxcore import Container, Engine, Image, Layer

FLEET_SIZE = 50
IDLE = ["sleep", "3600"]
BIG_IMAGE_MB = 210
COLD_LAYERS = 10


@dataclass
class Ctx:
    dir: Path  # the bench's own temp dir; everything it makes is below it
    engine: Engine
    image: str  # the busybox image every case runs
    rootfs: Path  # that image's base layer: the busybox root the baselines use
    raw: RawLXC
    tools: LXCTools
    podman: Podman
    docker: Docker  # started on first use: docker.ready()
    fast: int  # runs of cases that take milliseconds
    medium: int  # runs of podman's and whole-process cases
    slow: int  # runs of cases that take seconds (cold builds, fleets)
    say: Callable[[str], None]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _podman_row(ctx: Ctx, case: str, measure: str, value: float, label: str, factor: float,
                sample: Callable[[], float] | None, runs: int, warmup: int = 1) -> Row:
    """A "≥ factor× faster than podman" row, or one saying why podman was not measured."""
    def unmeasured(why: str) -> Row:
        return Row(case, measure, value, "s", label, None, None, "", f"≥ {factor:g}× faster", None,
                   note=f"podman not measured: {why}")

    if ctx.podman.reason or sample is None:
        return unmeasured(ctx.podman.reason or "its set-up step failed (see the run's stderr)")
    try:
        base = medians({"podman": sample}, runs, warmup=warmup)["podman"]
    except RuntimeError as err:
        return unmeasured(str(err))
    return faster(case, measure, value, label, base, factor)


def _podman_prepare(ctx: Ctx, step: Callable[[], object]) -> bool:
    """Run a podman set-up step; False (and podman skipped for the case) if it fails."""
    if ctx.podman.reason:
        return False
    try:
        step()
    except RuntimeError as err:
        ctx.say(f"  podman: {err}")
        return False
    return True


# -- run_rm --------------------------------------------------------------------


def case_run_rm(ctx: Ctx) -> list[Row]:
    containers = ctx.engine.containers
    keep = ctx.raw.clone(ctx.raw.new_name("exec"))  # for lxc-execute alone
    try:
        m = medians({
            "px": clocked(containers.run, ctx.image, ["true"], remove=True),
            "raw": ctx.raw.run_rm,
            "cli": clocked(ctx.tools.run_rm),
            "execute": clocked(ctx.tools.execute_true, keep.name),
            "floor": clocked(_run, floor_argv(ctx.rootfs)),
        }, ctx.fast)
    finally:
        ctx.raw.destroy(keep)
    what = "run(img, ['true'], remove=True)"
    rows = [
        at_most("run_rm", what, m["px"], "raw liblxc: clone + start + wait + destroy", m["raw"], 1.3),
        _podman_row(ctx, "run_rm", what, m["px"], "podman run --rm true", 5,
                    clocked(ctx.podman.run_rm), ctx.medium),
        info("run_rm", what, m["px"], "lxc-copy -s + lxc-execute + lxc-destroy", m["cli"]),
        info("run_rm", what, m["px"], "lxc-execute true (container exists)", m["execute"]),
        info("run_rm", what, m["px"], "floor: unshare + chroot true", m["floor"]),
    ]
    return rows


# -- exec ----------------------------------------------------------------------


def case_exec(ctx: Ctx) -> list[Row]:
    c = ctx.engine.containers.run(ctx.image, ["sleep", "3600"], detach=True)
    rc, _ = ctx.raw.start_idle()
    try:
        m = medians({
            "px": clocked(c.exec, ["true"]),
            "raw": clocked(ctx.raw.attach_true, rc),
            "cli": clocked(ctx.tools.attach_true, rc.name),
        }, ctx.fast)
        # The attach server forks, not the caller: an exec costs the same from
        # a caller holding much memory (a fork of it would copy its page tables).
        held = bytearray(b"\1") * (200 << 20)
        big = medians({"px": clocked(c.exec, ["true"])}, ctx.fast)["px"]
        del held
    finally:
        c.remove(force=True)
        ctx.raw.destroy(rc)
    what = "c.exec(['true'])"
    sample = None
    if _podman_prepare(ctx, lambda: ctx.podman.start_idle("pxbench-idle")):
        sample = clocked(ctx.podman.exec_true, "pxbench-idle")
    try:
        pm = _podman_row(ctx, "exec", what, m["px"], "podman exec true", 20, sample, ctx.medium)
    finally:
        if sample is not None:
            ctx.podman.run("rm", "--force", "--time", "0", "pxbench-idle", check=False)
    return [
        at_most("exec", what, m["px"], "raw liblxc attach_wait(true)", m["raw"], 1.5),
        pm,
        info("exec", what, m["px"], "lxc-attach --clear-env true", m["cli"]),
        info("exec", "c.exec(['true']) from a caller holding 200 MB", big, f"{what} from this caller",
             m["px"]),
    ]


# -- provision -------------------------------------------------------------------


def _big_image(ctx: Ctx) -> tuple[str, int]:
    """An image of ≥ 200 MB: a ``dir:`` base holding the busybox root plus random files."""
    src = ctx.dir / "big-src"
    shutil.copytree(ctx.rootfs, src, symlinks=True)
    data = src / "data"
    data.mkdir()
    chunk = 2 << 20
    for i in range(BIG_IMAGE_MB // 2):
        (data / f"blob-{i:03d}").write_bytes(os.urandom(chunk))
    built = ctx.engine.images.build(Image("pxbench/big:1", base=f"dir:{src}"))
    shutil.rmtree(src)
    return built.name, built.size


def _du_kb(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def case_provision(ctx: Ctx) -> list[Row]:
    big, big_size = _big_image(ctx)
    small_size = ctx.engine.images.get(ctx.image).size
    created: list[Container] = []
    clones: list[Any] = []

    def create(image: str) -> float:
        t0 = time.perf_counter()
        c = ctx.engine.containers.create(image, ["true"])
        seconds = time.perf_counter() - t0
        created.append(c)
        return seconds

    def clone() -> float:
        t0 = time.perf_counter()
        clones.append(ctx.raw.clone(ctx.raw.new_name("prov")))
        return time.perf_counter() - t0

    try:
        m = medians({"small": lambda: create(ctx.image), "big": lambda: create(big), "raw": clone}, ctx.fast)
        disk_kb = max(_du_kb(c.dir) for c in created)
    finally:
        for c in created:
            c.remove(force=True)
        for rc in clones:
            ctx.raw.destroy(rc)
    small_label = f"create() from busybox ({small_size / 1e6:.1f} MB)"
    big_label = f"create() from a {big_size / 1e6:.0f} MB image"
    return [
        at_most("provision", big_label, m["big"], small_label, m["small"], 1.5),
        absolute("provision", "disk per created container (du -sk of its dir, max)", disk_kb, "KB", 100),
        info("provision", small_label, m["small"], "raw liblxc clone (overlay snapshot)", m["raw"]),
    ]


# -- builds ----------------------------------------------------------------------


def _layers(token: str) -> list[str]:
    return [f"echo {token}-{i} > /f{i}" for i in range(COLD_LAYERS)]


def _image(name: str, token: str) -> Image:
    return Image(name, base="busybox", layers=[Layer.run(s, network="none") for s in _layers(token)])


def _podman_context(ctx: Ctx, token: str) -> Path:
    d = ctx.dir / f"podman-ctx-{token}"
    d.mkdir()
    (d / "Containerfile").write_text(containerfile(_layers(token)))
    return d


def _cli_argv(root: Path, yaml_path: Path) -> tuple[list[str], str]:
    """The whole-process rebuild: the CLI if it exists yet, else the same call through ``python -c``."""
    py = sys.executable
    probe = subprocess.run([py, "-m", "pylxcore", "--help"], capture_output=True, text=True, check=False)
    if probe.returncode == 0 and "build" in probe.stdout:
        argv = [py, "-m", "pylxcore", "--root", str(root), "build", str(yaml_path)]
        return argv, "CLI `python -m pylxcore build`, whole process"
    code = ("import sys; from pylxcore import Engine, Image; "
            "Engine(sys.argv[1]).images.build(Image.load(sys.argv[2]))")
    argv = [py, "-c", code, str(root), str(yaml_path)]
    return argv, "`python -c Engine().images.build(Image.load())`, whole process (no CLI yet)"


def case_rebuild_cached(ctx: Ctx) -> list[Row]:
    image = _image("pxbench/ten:1", "cached")
    yaml_dir = ctx.dir / "ten"
    yaml_dir.mkdir()
    (yaml_dir / "image.yaml").write_text(image.to_yaml())
    ctx.engine.images.build(image)  # the cold build, not timed here
    again = ctx.engine.images.build(image)
    if not all(step.cached for step in again.layers):
        raise RuntimeError("the rebuild of an unchanged image was not fully cached")
    inproc = medians({"px": clocked(ctx.engine.images.build, image)}, ctx.fast)["px"]
    argv, label = _cli_argv(ctx.engine.root, yaml_dir / "image.yaml")
    whole = medians({"px": clocked(_run, argv)}, ctx.medium)["px"]
    sample = None
    pctx = _podman_context(ctx, "cached")
    if _podman_prepare(ctx, lambda: ctx.podman.build(pctx, "pxbench-ten")):
        sample = clocked(ctx.podman.build, pctx, "pxbench-ten")
    return [
        absolute("rebuild_cached", f"images.build() of an unchanged {COLD_LAYERS}-layer image, in-process",
                 inproc, "s", 0.020),
        _podman_row(ctx, "rebuild_cached", label, whole, "podman build (all cached)", 2, sample, ctx.medium),
    ]


def case_build_cold(ctx: Ctx) -> list[Row]:
    def px_once() -> float:
        image = _image("pxbench/cold:1", secrets.token_hex(4))
        t0 = time.perf_counter()
        ctx.engine.images.build(image)
        return (time.perf_counter() - t0) / COLD_LAYERS

    def podman_once() -> float:
        pctx = _podman_context(ctx, secrets.token_hex(4))
        t0 = time.perf_counter()
        ctx.podman.build(pctx, "pxbench-cold")
        return (time.perf_counter() - t0) / COLD_LAYERS

    per_step = medians({"px": px_once}, ctx.slow, warmup=0)["px"]
    what = f"per step of a cold {COLD_LAYERS}-layer build (each writes one small file)"
    return [_podman_row(ctx, "build_cold", what, per_step, "podman build, per step", 5,
                        None if ctx.podman.reason else podman_once, ctx.slow, warmup=0)]


# -- fleet -----------------------------------------------------------------------


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (the python binary, libc, liblxc) split among their users."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _mem_available_kb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _host_side_kb(c: Container) -> tuple[int, int]:
    """(PSS of the supervisor + liblxc's monitor, PSS of the container's own processes) in KB.

    The supervisor pid and the ``lxc-execute`` pid (the monitor) come from the
    supervisor's state.json; the container's own processes are the monitor's
    descendants (liblxc's init, then the payload).
    """
    st = json.loads((c.dir / "state.json").read_text())
    shim, monitor = int(st["shim_pid"]), int(st["lxc_pid"])
    own, todo = 0, children(monitor)
    while todo:
        pid = todo.pop()
        own += _pss_kb(pid)
        todo += children(pid)
    return _pss_kb(shim) + _pss_kb(monitor), own


def _zygote_kb(ctx: Ctx, supervisors: set[int]) -> int:
    """PSS of the store's zygote (the process that forks the supervisors), if
    it runs: the fleet shares it, so each container is charged its part."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in supervisors:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"--zygote" in argv and any(str(ctx.engine.root).encode() in a for a in argv):
            total += _pss_kb(int(entry))
    return total


def case_fleet(ctx: Ctx) -> list[Row]:
    runs: list[dict[str, float]] = []
    for _ in range(ctx.slow):
        time.sleep(0.5)  # let the page cache and slab settle after the previous run
        avail0 = _mem_available_kb()
        t0 = time.perf_counter()
        fleet = [ctx.engine.containers.run(ctx.image, IDLE, detach=True) for _ in range(FLEET_SIZE)]
        started = time.perf_counter() - t0
        try:
            time.sleep(1.0)  # let the last ones finish starting before reading memory
            sides = [_host_side_kb(c) for c in fleet]
            shims = {int(json.loads((c.dir / "state.json").read_text())["shim_pid"]) for c in fleet}
            zygote = _zygote_kb(ctx, shims)
            avail1 = _mem_available_kb()
        finally:
            t0 = time.perf_counter()
            for c in fleet:
                c.stop()
                c.remove()
            stopped = time.perf_counter() - t0
        own = sum(o for _, o in sides) / FLEET_SIZE
        runs.append({
            "start": started,
            "stop": stopped,
            "host": (sum(h for h, _ in sides) + zygote) / FLEET_SIZE / 1024,
            "own": own / 1024,
            "avail": ((avail0 - avail1) / FLEET_SIZE - own) / 1024,
        })
        ctx.say(f"  fleet run: start {started:.2f}s stop+rm {stopped:.2f}s")
    raw_start, raw_stop = _raw_fleet(ctx)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    n = FLEET_SIZE
    return [
        info("fleet", f"start {n} idle containers (run detach=True)", med["start"],
             f"raw liblxc: {n} × clone + start", raw_start),
        info("fleet", f"stop() + remove() of {n}", med["stop"],
             f"raw liblxc: {n} × stop + destroy", raw_stop),
        absolute("fleet", "host memory per idle container: supervisor + liblxc monitor + 1/50 zygote (PSS)",
                 med["host"], "MB", 2, note=f"its own init + sleep: {med['own']:.2f} MB, not counted"),
        Row("fleet", "MemAvailable drop per container, minus its own processes' PSS", med["avail"], "MB",
            note="kernel objects, page cache and the above; noisy on a shared host"),
    ]


def _raw_fleet(ctx: Ctx) -> tuple[float, float]:
    t0 = time.perf_counter()
    fleet, moved = [], 0.0
    for _ in range(FLEET_SIZE):
        rc, seconds = ctx.raw.start_idle()
        fleet.append(rc)
        moved += seconds
    started = time.perf_counter() - t0 - moved
    t0 = time.perf_counter()
    for rc in fleet:
        ctx.raw.destroy(rc)
    return started, time.perf_counter() - t0


# -- import ----------------------------------------------------------------------


def case_import(ctx: Ctx) -> list[Row]:
    # The package itself loads its names on first use, so a bare "import
    # pylxcore" would measure nothing: time what a script does first.
    py = sys.executable
    code = "from pylxcore import Engine, Image, Layer, Limits"
    m = medians({
        "px": clocked(_run, [py, "-c", code]),
        "pass": clocked(_run, [py, "-c", "pass"]),
    }, ctx.fast)
    extra = m["px"] - m["pass"]
    return [absolute("import", f"`python -c '{code}'` minus `python -c pass`", extra, "s", 0.100,
                     "python -c pass", m["pass"], note=f"{m['px'] * 1e3:.0f} ms in all")]


# -- stop ------------------------------------------------------------------------

READY = ["/bin/sh", "-c", "touch /tmp/ready; exec sleep 3600"]


def case_stop(ctx: Ctx) -> list[Row]:
    c = ctx.engine.containers.create(ctx.image, READY)
    ready = c.dir / "upper" / "tmp" / "ready"  # the container's writable layer, seen from the host

    def px_once() -> float:
        if ready.exists():
            ready.unlink()
        c.start()
        wait_for_file(ready)
        t0 = time.perf_counter()
        c.stop()
        return time.perf_counter() - t0

    rc = ctx.raw.clone(ctx.raw.new_name("stop"))
    exits: list[float] = []
    try:
        m = medians({"px": px_once, "raw": lambda: ctx.raw.stop_sample(rc, exits)}, ctx.fast)
    finally:
        c.remove(force=True)
        ctx.raw.destroy(rc)
    what = "c.stop() of a process that exits on SIGTERM"
    return [
        at_most("stop", what, m["px"], "raw liblxc: SIGTERM → STOPPED", m["raw"], 1.5),
        info("stop", what, m["px"], "the process alone: SIGTERM → exit (pidfd)", statistics.median(exits)),
    ]


# -- whole-process CLIs: pylxcore vs docker vs podman --------------------------------


def _pylxcore_cli(ctx: Ctx) -> tuple[list[str], str]:
    """What a user types: the ``pylxcore`` script beside this Python, else ``python -m pylxcore``;
    and how the table names it."""
    script = Path(sys.executable).parent / "pylxcore"
    if script.exists():
        return [str(script), "--root", str(ctx.engine.root)], "pylxcore"
    return [sys.executable, "-m", "pylxcore", "--root", str(ctx.engine.root)], "python -m pylxcore"


def _run_quiet(argv: list[str]) -> None:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err[-1] if err else ''}")


@dataclass
class Round:
    """Round-robin medians of pylxcore ("px") and its peers; ``why`` says why a peer was not measured."""

    m: dict[str, float]
    why: dict[str, str]

    @classmethod
    def of(cls, px: Sample, peers: dict[str, Sample | str], runs: int) -> Round:
        """``peers``: name → its Sample, or why it cannot be measured. A peer that fails
        mid-way drops out (and says why) instead of ending the others' round-robin."""
        why = {name: p for name, p in peers.items() if isinstance(p, str)}

        def guarded(name: str, sample: Sample) -> Sample:
            def run() -> float:
                if name in why:
                    return 0.0
                try:
                    return sample()
                except RuntimeError as err:
                    why[name] = str(err)
                    return 0.0
            return run

        samples = {"px": px}
        samples.update({name: guarded(name, p) for name, p in peers.items() if not isinstance(p, str)})
        return cls(medians(samples, runs), why)

    def faster(self, case: str, measure: str, label: str, peer: str, factor: float) -> Row:
        """A "≥ factor× faster than the peer" row, or one saying why the peer was not measured."""
        if peer in self.why:
            return Row(case, measure, self.m["px"], "s", label, None, None, "", f"≥ {factor:g}× faster", None,
                       note=f"{peer} not measured: {self.why[peer]}")
        return faster(case, measure, self.m["px"], label, self.m[peer], factor)

    def shown(self, case: str, measure: str, label: str, peer: str, note: str = "") -> Row:
        """The peer shown for scale, with no target, or a row saying why it was not measured."""
        if peer in self.why:
            return Row(case, measure, self.m["px"], "s", label, None, None, "", "", None,
                       note=f"{peer} not measured: {self.why[peer]}")
        return info(case, measure, self.m["px"], label, self.m[peer], note)

    def at_most(self, case: str, measure: str, label: str, peer: str, limit: float) -> Row:
        """A "≤ limit× the peer's time" row, or one saying why the peer was not measured."""
        if peer in self.why:
            return Row(case, measure, self.m["px"], "s", label, None, None, "", f"≤ {limit:g}×", None,
                       note=f"{peer} not measured: {self.why[peer]}")
        return at_most(case, measure, self.m["px"], label, self.m[peer], limit)


def _peer(why_not: str | None, make: Callable[[], Sample]) -> Sample | str:
    """A peer's Sample from ``make`` (which may set things up first), or why it cannot be measured."""
    if why_not:
        return why_not
    try:
        return make()
    except RuntimeError as err:
        return f"its set-up step failed: {err}"


def _docker(ctx: Ctx, make: Callable[[], Sample]) -> Sample | str:
    """As ``_peer``; dockerd starts on the first call."""
    return _peer(None if ctx.docker.ready() else ctx.docker.reason or "?", make)


def case_cli_run_rm(ctx: Ctx) -> list[Row]:
    cli, name = _pylxcore_cli(ctx)
    px = [*cli, "run", "--rm", ctx.image, "true"]
    r = Round.of(clocked(_run_quiet, px), {
        "docker": _docker(ctx, lambda: clocked(ctx.docker.run_rm)),
        "podman": _peer(ctx.podman.reason, lambda: clocked(ctx.podman.run_rm)),
    }, ctx.medium)
    what = f"CLI `{name} run --rm IMG true`, whole process"
    return [
        r.faster("cli_run_rm", what, "docker run --rm --network none IMG true", "docker", 2),
        r.faster("cli_run_rm", what, "podman run --rm --network none IMG true", "podman", 2),
    ]


def case_cli_rebuild_cached(ctx: Ctx) -> list[Row]:
    image = _image("pxbench/ten-cli:1", "cached")
    yaml_dir = ctx.dir / "ten-cli"
    yaml_dir.mkdir()
    (yaml_dir / "image.yaml").write_text(image.to_yaml())
    cli, name = _pylxcore_cli(ctx)
    px = [*cli, "build", "-q", str(yaml_dir / "image.yaml")]
    _run_quiet(px)  # the cold build, then a cached one, neither timed
    _run_quiet(px)
    if not all(step.cached for step in ctx.engine.images.build(image).layers):
        raise RuntimeError("the rebuild of an unchanged image was not fully cached")

    dctx = ctx.dir / "docker-ctx-cached"
    dctx.mkdir()
    (dctx / "Dockerfile").write_text(dockerfile(_layers("cached")))
    pctx = _podman_context(ctx, "cli-cached")

    def docker(buildkit: bool) -> Sample:
        ctx.docker.build(dctx, "pxbench-ten", buildkit=buildkit)  # the cold build, not timed
        return clocked(ctx.docker.build, dctx, "pxbench-ten", buildkit=buildkit)

    def podman() -> Sample:
        ctx.podman.build(pctx, "pxbench-ten-cli")  # the cold build, not timed
        return clocked(ctx.podman.build, pctx, "pxbench-ten-cli")

    r = Round.of(clocked(_run_quiet, px), {
        "docker": _docker(ctx, lambda: docker(False)),
        # Docker 20.10's CLI uses its legacy builder by default; BuildKit is one variable away.
        "docker_buildkit": _docker(ctx, lambda: docker(True)),
        "podman": _peer(ctx.podman.reason, podman),
    }, ctx.medium)
    what = f"CLI `{name} build` of an unchanged {COLD_LAYERS}-layer image, whole process"
    return [
        r.faster("cli_rebuild_cached", what, "docker build (20.10's default, legacy builder), all cached",
                 "docker", 3),
        r.faster("cli_rebuild_cached", what, "DOCKER_BUILDKIT=1 docker build, all cached",
                 "docker_buildkit", 3),
        r.faster("cli_rebuild_cached", what, "podman build, all cached", "podman", 3),
    ]


def case_cli_ps(ctx: Ctx) -> list[Row]:
    cli, name = _pylxcore_cli(ctx)
    px = [*cli, "ps"]
    fleet: list[Container] = []
    docker_fleet = False

    def docker() -> Sample:
        nonlocal docker_fleet
        docker_fleet = True
        for _ in range(FLEET_SIZE):
            ctx.docker.start_idle()
        return clocked(ctx.docker.ps)

    try:
        for _ in range(FLEET_SIZE):
            fleet.append(ctx.engine.containers.run(ctx.image, IDLE, detach=True))
        listed = subprocess.run([*px, "-q"], capture_output=True, text=True, check=True).stdout.split()
        if len(listed) != FLEET_SIZE:
            raise RuntimeError(f"pylxcore ps -q listed {len(listed)} containers, not {FLEET_SIZE}")
        r = Round.of(clocked(_run_quiet, px), {"docker": _docker(ctx, docker)}, ctx.medium)
    finally:
        for c in fleet:
            c.remove(force=True)
        if docker_fleet:
            ctx.docker.remove_containers()
    what = f"CLI `{name} ps` with {FLEET_SIZE} running containers, whole process"
    if "docker" in r.why:
        why = f"docker not measured: {r.why['docker']}"
        return [absolute("cli_ps", what, r.m["px"], "s", 0.060, note=why)]
    return [absolute("cli_ps", what, r.m["px"], "s", 0.060, f"docker ps with {FLEET_SIZE} running",
                     r.m["docker"])]


# -- Dockerfile builds, cp and commit: whole-process CLIs against docker (bench/peer_cases.py) --


def case_dockerfile_build(ctx: Ctx) -> list[Row]:
    from peer_cases import dockerfile_build  # (it imports this module's helpers)

    return dockerfile_build(ctx)


def case_cp_commit(ctx: Ctx) -> list[Row]:
    from peer_cases import cp_commit

    return cp_commit(ctx)


# -- registry --------------------------------------------------------------------


def case_registry(ctx: Ctx) -> list[Row]:
    from registry_case import pull_push  # (a module of its own: it runs docker-registry)

    big, size = _big_image(ctx)
    return pull_push(ctx, big, size)


# -- networks: bridges and published ports against docker's and podman's (bench/network_case.py) --


def case_net_run_rm(ctx: Ctx) -> list[Row]:
    from network_case import net_run_rm  # (it imports this module's helpers)

    return net_run_rm(ctx)


def case_net_throughput(ctx: Ctx) -> list[Row]:
    from network_case import net_throughput

    return net_throughput(ctx)


def case_net_connect_rate(ctx: Ctx) -> list[Row]:
    from network_case import net_connect_rate

    return net_connect_rate(ctx)


def case_attach_rtt(ctx: Ctx) -> list[Row]:
    from terminal_case import case_attach_rtt as case

    return case(ctx)


def case_idle_supervisors(ctx: Ctx) -> list[Row]:
    from terminal_case import case_idle_supervisors as case

    return case(ctx)


CASES: dict[str, Callable[[Ctx], list[Row]]] = {
    "run_rm": case_run_rm,
    "exec": case_exec,
    "provision": case_provision,
    "rebuild_cached": case_rebuild_cached,
    "build_cold": case_build_cold,
    "fleet": case_fleet,
    "import": case_import,
    "stop": case_stop,
    "cli_run_rm": case_cli_run_rm,
    "cli_rebuild_cached": case_cli_rebuild_cached,
    "cli_ps": case_cli_ps,
    "dockerfile_build": case_dockerfile_build,
    "cp_commit": case_cp_commit,
    "registry": case_registry,
    "export_oci": case_export_oci,
    "export_xz": case_export_xz,
    "export_memory": case_export_memory,
    "net_run_rm": case_net_run_rm,
    "net_throughput": case_net_throughput,
    "net_connect_rate": case_net_connect_rate,
    "attach_rtt": case_attach_rtt,
    "idle_supervisors": case_idle_supervisors,
}
