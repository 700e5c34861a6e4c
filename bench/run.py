"""pylxcore's benchmark harness: ``python bench/run.py [--quick] [--runs N] [--only CASE,...]``.

Runs every case in ``cases.py`` against baselines measured in the same run,
prints a table of medians and ratios, and writes it with a description of the
machine to ``bench/RESULTS.md`` (not when ``--only`` picks some cases, unless
``--output`` says where). Needs root and LXC. Everything it makes lives under
a fresh ``/tmp/pxbench-*`` dir and is removed at the end: containers (ours,
raw liblxc's, podman's and docker's), cgroups, mounts, podman's store, and the
dockerd (with its containerd) the docker cases start, stopped by pid.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import LXCTools, RawLXC
from cases import CASES, Ctx
from docker import Docker
from podman import Podman
from timing import Row, table

from pylxcore.cli.warm import stop_servers

HERE = Path(__file__).resolve().parent


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the machine -----------------------------------------------------------------


def _first(path: str, prefix: str) -> str:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return out.strip().splitlines()[0] if out.strip() else "not installed"


def machine() -> dict[str, str]:
    import lxc

    mem_kb = int(_first("/proc/meminfo", "MemTotal").split()[0])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "CPU": _first("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1048576:.1f} GiB",
        "liblxc": str(lxc.version),
        "python": f"{platform.python_version()} ({sys.executable})",
        "podman": _version(["podman", "--version"]),
        "runc": _version(["runc", "--version"]),
        "docker": _version(["dockerd", "--version"]),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# -- setup and cleanup -------------------------------------------------------------


def _cgroup_dirs() -> set[str]:
    out = set()
    for dirpath, _, _ in os.walk("/sys/fs/cgroup"):
        out.add(dirpath)
    return out


def setup(bench_dir: Path, fast: int, medium: int, slow: int) -> Ctx:
    from pylxcore import Engine, Image

    engine = Engine(bench_dir / "store")
    say("building the busybox image")
    built = engine.images.build(Image("pxbench/busybox:1", base="busybox"))
    rootfs = engine.store.layer_dir(built.layer_keys[0]) / "fs"
    from pylxcore.runtime.lxcconfig import SECCOMP_PROFILE as seccomp  # the one pylxcore containers get
    raw = RawLXC(bench_dir / "raw", rootfs, seccomp)
    podman = Podman(bench_dir)
    say("setting up podman (installs podman and runc if missing)")
    podman.setup(rootfs)
    if podman.reason:
        say(f"  {podman.reason}")
    # Docker's daemon starts only when a case first asks for it (Docker.ready()).
    docker = Docker(bench_dir, rootfs)
    return Ctx(bench_dir, engine, built.name, rootfs, raw, LXCTools(raw), podman, docker, fast, medium, slow,
               say)


def _remove_cgroups(dirs: list[str]) -> list[str]:
    """rmdir, deepest first; retried for a few seconds, since liblxc's monitor
    processes leave their cgroup a moment after the container is STOPPED."""
    pending = sorted(dirs, key=len, reverse=True)
    deadline = time.monotonic() + 5
    while True:
        failed = []
        for d in pending:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as err:
                failed.append((d, err.strerror))
        if not failed or time.monotonic() > deadline:
            return [f"cgroup {d}: {why}" for d, why in failed]
        pending = [d for d, _ in failed]
        time.sleep(0.1)


def _remove_containers(ctx: Ctx) -> None:
    for c in ctx.engine.containers.list(all=True):
        c.remove(force=True)


def cleanup(ctx: Ctx | None, bench_dir: Path, cgroups_before: set[str]) -> list[str]:
    """Remove everything the run made; returns what could not be removed."""
    problems: list[str] = []
    steps: list[tuple[str, Callable[[], None]]] = []
    if ctx is not None:
        steps = [
            ("pylxcore containers", lambda: _remove_containers(ctx)),
            ("raw liblxc containers", ctx.raw.destroy_all),
            ("podman", ctx.podman.cleanup),
            ("docker", ctx.docker.cleanup),
            ("command servers", lambda: stop_servers(str(bench_dir / "warm")) and None),
        ]
    for what, step in steps:
        try:
            step()
        except Exception as err:  # noqa: BLE001  (clean up the rest all the same)
            problems.append(f"{what}: {err}")
    root_id = getattr(ctx.engine.store, "root_id", "pxbench") if ctx else "pxbench"
    ours = ("pxbench", f"pylxcore-{root_id}", "libpod")
    problems += _remove_cgroups([d for d in _cgroup_dirs() - cgroups_before if any(t in d for t in ours)])
    with open("/proc/self/mountinfo") as fh:
        mounts = [line.split()[4] for line in fh if str(bench_dir) in line.split()[4]]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(bench_dir, ignore_errors=True)
    if bench_dir.exists():
        problems.append(f"{bench_dir} could not be removed")
    return problems


# -- output ----------------------------------------------------------------------


def render(rows: list[Row], info: dict[str, str], argv: list[str], seconds: float, notes: list[str]) -> str:
    lines = [
        "# pylxcore benchmark results",
        "",
        f"Written by `python bench/run.py{' ' + ' '.join(argv) if argv else ''}` "
        f"in {seconds:.0f} s. Medians of warm runs; every baseline was measured in the same run "
        "(see bench/README.md for what each case and baseline does).",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Results",
        "",
        "Ratio: for a `≤` target, pylxcore's time as a multiple of the baseline's; for a "
        "`faster` target, the baseline's time divided by pylxcore's.",
        "",
        table(rows),
        "",
    ]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of fast cases, 1 of slow ones")
    parser.add_argument("--runs", type=int, help="runs of fast cases (default 15; slow cases get a fifth)")
    parser.add_argument("--only", help=f"comma-separated cases among: {', '.join(CASES)}")
    parser.add_argument("--output", type=Path, help="where to write the results (default bench/RESULTS.md)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (privileged LXC containers)")
    only = list(CASES) if not args.only else [c.strip() for c in args.only.split(",")]
    unknown = [c for c in only if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    fast = args.runs or (3 if args.quick else 15)
    medium, slow = max(3, round(fast * 2 / 3)), max(1, fast // 5)
    output = args.output or (None if args.only else HERE / "RESULTS.md")

    started = time.perf_counter()
    info = machine()
    bench_dir = Path(tempfile.mkdtemp(prefix="pxbench-"))
    # An installed package has its bytecode cached; let the processes we time
    # have it too (in our temp dir), even where the environment forbids writing it.
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        info["bytecode"] = "PYTHONDONTWRITEBYTECODE was set; unset for the run, cache in the bench dir"
    os.environ["PYTHONPYCACHEPREFIX"] = str(bench_dir / "pycache")
    # The pylxcore commands it times use command servers of its own, stopped at the end.
    os.environ["PYLXCORE_WARM_DIR"] = str(bench_dir / "warm")
    cgroups_before = _cgroup_dirs()
    ctx: Ctx | None = None
    rows: list[Row] = []
    notes: list[str] = []
    try:
        ctx = setup(bench_dir, fast, medium, slow)
        if ctx.podman.reason:
            notes.append(f"podman: {ctx.podman.reason}")
        for name in only:
            t0 = time.perf_counter()
            say(f"{name} …")
            try:
                rows += CASES[name](ctx)
            except Exception as err:  # noqa: BLE001  (one broken case must not hide the others)
                traceback.print_exc()
                rows.append(Row(name, "case failed", None, note=f"{type(err).__name__}: {err}"))
            say(f"{name} done in {time.perf_counter() - t0:.1f} s")
    finally:
        say("cleaning up")
        problems = cleanup(ctx, bench_dir, cgroups_before)
    notes += [f"cleanup: {p}" for p in problems]
    if ctx is not None and ctx.docker.reason:
        notes.append(f"docker: {ctx.docker.reason}")
    elif ctx is not None and ctx.docker.version != "not started":
        info["docker"] = ctx.docker.version
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    seconds = time.perf_counter() - started
    text = render(rows, info, sys.argv[1:] if argv is None else argv, seconds, notes)
    print(table(rows))
    for n in notes:
        print(f"note: {n}")
    print(f"\nfull run: {seconds:.0f} s")
    if output is not None:
        output.write_text(text)
        print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
