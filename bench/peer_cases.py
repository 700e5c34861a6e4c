"""Whole-process CLI cases against docker (and podman): Dockerfile builds, ``cp`` and ``commit``.

``dockerfile_build``: the same 10-step Dockerfile built by ``pylxcore build``,
``docker build`` (Docker 20.10's legacy builder and BuildKit) and ``podman
build``; cold (a fresh ``NONCE`` build arg per run, so every RUN step runs
and the base stays cached) and fully cached. ``cp_commit``: ``cp`` of a
100 MB directory into and out of a running container, and ``commit`` of a
container whose writable layer holds those 100 MB, against docker's.

Imported by ``cases.py`` when one of these cases runs (it imports that module).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from cases import COLD_LAYERS, IDLE, Ctx, Round, _docker, _peer, _pylxcore_cli
from docker import IMAGE as DOCKER_IMAGE
from podman import IMAGE as PODMAN_IMAGE
from podman import ULIMITS
from timing import Row, Sample, clocked

CP_FILES = 100
CP_FILE_BYTES = 1 << 20  # 100 × 1 MB of random bytes: nothing compresses, nothing is shared


def _dockerfile() -> str:
    """One Dockerfile for all three: the base and the nonce come in as build args."""
    steps = [f"RUN echo $NONCE-{i} > /f{i}" for i in range(COLD_LAYERS)]
    return "\n".join(["ARG BASE", "FROM $BASE", "ARG NONCE", *steps]) + "\n"


def _checked(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Run ``argv``; its stdout, or RuntimeError naming the last line of its stderr."""
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else ""
        raise RuntimeError(f"{Path(argv[0]).name} {argv[1:2]} exited {proc.returncode}: {last}")
    return proc.stdout.decode(errors="replace")


# -- dockerfile_build --------------------------------------------------------------


class _CacheCheck:
    """A builder's first build of a nonce must run every RUN step; its next ones none.

    The peers' outputs count the cache hits of all steps: the ``ARG NONCE``
    step itself (the legacy builder, podman) or the FROM (BuildKit) is one
    more, cold or not; so a cold build has at most one hit, a cached one at
    least one per RUN step.
    """

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, who: str, hits: int, nonce: str, out: str) -> None:
        cached = (who, nonce) in self.seen
        self.seen.add((who, nonce))
        if (hits < COLD_LAYERS) if cached else (hits > 1):
            want = f"at least {COLD_LAYERS}" if cached else "at most 1 (not a RUN step)"
            raise RuntimeError(f"{who} took {hits} steps from its cache, expected {want}")


def dockerfile_build(ctx: Ctx) -> list[Row]:
    dctx = ctx.dir / "dockerfile-ctx"
    dctx.mkdir()
    (dctx / "Dockerfile").write_text(_dockerfile())
    cli, name = _pylxcore_cli(ctx)
    expect = _CacheCheck()

    def px(nonce: str) -> list[str]:
        return [*cli, "build", "-t", "pxbench/df:1", "--build-arg", f"BASE={ctx.image}",
                "--build-arg", f"NONCE={nonce}", str(dctx)]

    # Each build's output says which steps came from the cache: the legacy
    # builder and podman print "Using cache", BuildKit "#N CACHED".
    def docker(nonce: str, buildkit: bool) -> None:
        assert ctx.docker.peer is not None
        argv = [ctx.docker.peer.docker, "build", "--network", "none", "-t", "pxbench-df",
                "--build-arg", f"BASE={DOCKER_IMAGE}", "--build-arg", f"NONCE={nonce}", str(dctx)]
        env = {**ctx.docker.peer.env, "DOCKER_BUILDKIT": "1" if buildkit else "0"}
        if buildkit:
            argv.insert(2, "--progress=plain")  # (what a non-tty gets anyway)
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False)
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"docker build failed (exit {proc.returncode}): {out.strip()[-300:]}")
        hits = len(re.findall(r"^#\d+ CACHED$", out, re.M)) if buildkit else out.count("Using cache")
        expect("docker build" + (" (BuildKit)" if buildkit else ""), hits, nonce, out)

    def podman(nonce: str) -> None:
        proc = ctx.podman.run("build", "--network", "none", *ULIMITS, "-t", "pxbench-df", "-f",
                              str(dctx / "Dockerfile"), "--build-arg", f"BASE={PODMAN_IMAGE}",
                              "--build-arg", f"NONCE={nonce}", str(dctx))
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        expect("podman build", out.count("Using cache"), nonce, out)

    # pylxcore prints "Step i/n : … [RUN]" or "[CACHED]" for each step: check that
    # the cold builds ran every step and the cached ones none.
    def px_build(nonce: str, runs: int) -> None:
        out = _checked(px(nonce))
        ran = out.count("[RUN]")
        if ran != runs:
            raise RuntimeError(f"pylxcore build ran {ran} steps, not {runs}:\n{out}")

    nonces = (f"cold-{i}-{os.urandom(4).hex()}" for i in itertools.count())

    def per_step(build: Callable[[str], object]) -> Sample:
        def sample() -> float:
            nonce = next(nonces)
            t0 = time.perf_counter()
            build(nonce)
            return (time.perf_counter() - t0) / COLD_LAYERS
        return sample

    cold = Round.of(per_step(lambda n: px_build(n, COLD_LAYERS)), {
        "docker": _docker(ctx, lambda: per_step(lambda n: docker(n, False))),
        "docker_buildkit": _docker(ctx, lambda: per_step(lambda n: docker(n, True))),
        "podman": _peer(ctx.podman.reason, lambda: per_step(podman)),
    }, ctx.slow)

    def cached(build: Callable[[str], object]) -> Sample:
        build("cached")  # the cold build and a first rebuild, neither timed
        build("cached")
        return clocked(build, "cached")

    px_build("cached", COLD_LAYERS)
    warm = Round.of(clocked(px_build, "cached", 0), {
        "docker": _docker(ctx, lambda: cached(lambda n: docker(n, False))),
        "docker_buildkit": _docker(ctx, lambda: cached(lambda n: docker(n, True))),
        "podman": _peer(ctx.podman.reason, lambda: cached(podman)),
    }, ctx.medium)

    case = "dockerfile_build"
    build = f"CLI `{name} build -t X CONTEXT`"
    cold_what = f"{build} (Dockerfile), per step of a cold {COLD_LAYERS}-step build"
    warm_what = f"{build} of an unchanged {COLD_LAYERS}-step Dockerfile, whole process"
    note = "pylxcore's RUN shares the host's network (Docker's default); docker and podman: --network none"
    rows = [
        cold.faster(case, cold_what, "docker build (20.10's legacy builder), per step", "docker", 5),
        # BuildKit is opt-in in Docker 20.10: the targets are against
        # `docker build` as 20.10 runs it; BuildKit is shown for scale.
        cold.shown(case, cold_what, "DOCKER_BUILDKIT=1 docker build, per step", "docker_buildkit",
                   "20.10's opt-in builder, shown for scale"),
        cold.faster(case, cold_what, "podman build, per step", "podman", 5),
        warm.faster(case, warm_what, "docker build (20.10's legacy builder), all cached", "docker", 3),
        warm.shown(case, warm_what, "DOCKER_BUILDKIT=1 docker build, all cached", "docker_buildkit",
                   "20.10's opt-in builder, shown for scale"),
        warm.faster(case, warm_what, "podman build, all cached", "podman", 3),
    ]
    rows[0].note = f"{note}; {rows[0].note}" if rows[0].note else note
    return rows


# -- cp_commit -----------------------------------------------------------------------


def _data(ctx: Ctx) -> Path:
    src = ctx.dir / "cp-src" / "data"
    src.mkdir(parents=True)
    for i in range(CP_FILES):
        (src / f"blob-{i:03d}").write_bytes(os.urandom(CP_FILE_BYTES))
    return src


class _DockerSide:
    """docker's half of cp_commit: a running ``sleep 3600`` container with /data copied in."""

    NAME = "pxbench-cp"

    def __init__(self, ctx: Ctx, data: Path, out: Path) -> None:
        self.ctx, self.data, self.out = ctx, data, out
        self.started = False
        self.failed: str | None = None  # why setup() failed, so that it is tried once only
        self.n = itertools.count()

    def docker(self, *args: str) -> None:
        self.ctx.docker.run(*args)

    def setup(self) -> None:
        self.started = True
        self.docker("run", "-d", "--name", self.NAME, "--network", "none", DOCKER_IMAGE, *IDLE)
        self.docker("cp", str(self.data), f"{self.NAME}:/data")
        assert self.ctx.docker.peer is not None
        listed = self.ctx.docker.peer.run("exec", self.NAME, "ls", "/data").stdout.split()
        if len(listed) != CP_FILES:
            raise RuntimeError(f"docker cp copied {len(listed)} files, not {CP_FILES}")

    def cp_in(self) -> float:
        dest = f"/in-{next(self.n)}"
        t0 = time.perf_counter()
        self.docker("cp", str(self.data), f"{self.NAME}:{dest}")
        seconds = time.perf_counter() - t0
        self.docker("exec", self.NAME, "rm", "-rf", dest)  # keep the writable layer at 100 MB
        return seconds

    def cp_out(self) -> float:
        dest = self.out / f"docker-{next(self.n)}"
        t0 = time.perf_counter()
        self.docker("cp", f"{self.NAME}:/data", str(dest))
        seconds = time.perf_counter() - t0
        shutil.rmtree(dest)
        return seconds

    def commit(self) -> float:
        tag = f"pxbench-commit:{next(self.n)}"
        t0 = time.perf_counter()
        self.docker("commit", self.NAME, tag)
        seconds = time.perf_counter() - t0
        assert self.ctx.docker.peer is not None
        size = int(self.ctx.docker.peer.run("image", "inspect", "--format", "{{.Size}}", tag).stdout)
        if size < CP_FILES * CP_FILE_BYTES:
            raise RuntimeError(f"docker commit made an image of {size} bytes, less than the data's")
        self.docker("rmi", tag)
        return seconds


def cp_commit(ctx: Ctx) -> list[Row]:
    data = _data(ctx)
    out = ctx.dir / "cp-out"
    out.mkdir()
    cli, name = _pylxcore_cli(ctx)
    c = ctx.engine.containers.run(ctx.image, IDLE, detach=True)
    side = _DockerSide(ctx, data, out)
    n = itertools.count()
    try:
        _checked([*cli, "cp", str(data), f"{c.name}:/data"])
        listed = c.exec(["ls", "/data"]).stdout.split()
        if len(listed) != CP_FILES:
            raise RuntimeError(f"pylxcore cp copied {len(listed)} files, not {CP_FILES}")

        def px_in() -> float:
            dest = f"/in-{next(n)}"
            t0 = time.perf_counter()
            _checked([*cli, "cp", str(data), f"{c.name}:{dest}"])
            seconds = time.perf_counter() - t0
            c.exec(["rm", "-rf", dest])  # keep the writable layer at 100 MB
            return seconds

        def px_out() -> float:
            dest = out / f"px-{next(n)}"
            t0 = time.perf_counter()
            _checked([*cli, "cp", f"{c.name}:/data", str(dest)])
            seconds = time.perf_counter() - t0
            got = sum(f.stat().st_size for f in dest.iterdir())
            if got != CP_FILES * CP_FILE_BYTES:
                raise RuntimeError(f"pylxcore cp out brought {got} bytes, not {CP_FILES * CP_FILE_BYTES}")
            shutil.rmtree(dest)
            return seconds

        def px_commit() -> float:
            tag = f"pxbench/commit:{next(n)}"
            t0 = time.perf_counter()
            _checked([*cli, "commit", c.name, tag])
            seconds = time.perf_counter() - t0
            size = ctx.engine.images.get(tag).size
            if size < CP_FILES * CP_FILE_BYTES:
                raise RuntimeError(f"pylxcore commit made an image of {size} bytes, less than the data's")
            _checked([*cli, "rmi", tag])
            return seconds

        def docker(sample: Callable[[], float]) -> Sample | str:
            def make() -> Sample:
                if side.failed:
                    raise RuntimeError(side.failed)
                if not side.started:
                    try:
                        side.setup()
                    except RuntimeError as err:
                        side.failed = str(err)
                        raise
                return sample
            return _docker(ctx, make)

        rin = Round.of(px_in, {"docker": docker(side.cp_in)}, ctx.medium)
        rout = Round.of(px_out, {"docker": docker(side.cp_out)}, ctx.medium)
        rcommit = Round.of(px_commit, {"docker": docker(side.commit)}, ctx.medium)
    finally:
        c.remove(force=True)
        if side.started:
            ctx.docker.remove_containers()
    size = f"{CP_FILES} × {CP_FILE_BYTES >> 20} MB"
    return [
        rin.at_most("cp_commit", f"CLI `{name} cp DIR CTR:/PATH` of {size} into a running container",
                    "docker cp DIR CTR:/PATH", "docker", 1.2),
        rout.at_most("cp_commit", f"CLI `{name} cp CTR:/data DIR` of {size} out of it",
                     "docker cp CTR:/data DIR", "docker", 1.2),
        rcommit.at_most("cp_commit", f"CLI `{name} commit CTR IMG` of a 100 MB writable layer",
                        "docker commit CTR IMG (pauses, as pylxcore)", "docker", 1.0),
    ]
