"""The transfer cases: exports against the tools that do the same job.

* export_oci: ``engine.images.export(img, path, format="oci-archive")`` of a
  built image (its layers gzip -1 compressed on every core, the chunks that
  do not compress stored), against
  ``podman save --format oci-archive`` of the same image (loaded into podman
  first; podman writes its layers uncompressed);
* export_xz: ``format="lxc"`` (the rootfs as ``.tar.xz``) against
  ``tar -C ROOT -c . | xz -T0`` of the same tree;
* export_memory: the peak RSS of a process exporting that image to a pipe,
  minus that of one exporting the tiny busybox image: streaming must not
  grow with the layers' size.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

from timing import Row, absolute, at_most, medians

from pylxcore import Image

if TYPE_CHECKING:
    from cases import Ctx

EXPORT_MB = 32  # a third random (incompressible), the rest compressible text; xz of it takes a while


def _export_image(ctx: Ctx) -> str:
    """A 3-layer image of ~EXPORT_MB MB on the busybox image (built once)."""
    third = EXPORT_MB // 3
    layers = [
        f"head -c {third << 20} /dev/urandom > /random",
        f"seq 1 {third * 150000} > /numbers",
        f"seq 1 {third * 150000} | tac > /reversed",
    ]
    return ctx.engine.images.build(Image("pxbench/export:1", base=f"image:{ctx.image}", layers=layers)).name


def case_export_oci(ctx: Ctx) -> list[Row]:
    image = _export_image(ctx)
    out = ctx.dir / "export-oci.tar"
    theirs = ctx.dir / "export-podman.tar"

    def px_once() -> float:
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        ctx.engine.images.export(image, out, format="oci-archive")
        return time.perf_counter() - t0

    what = f"export a {EXPORT_MB} MB 3-layer image as an oci-archive (gzip layers)"
    if ctx.podman.reason:
        value = medians({"px": px_once}, ctx.slow, warmup=0)["px"]
        return [Row("export_oci", what, value, note=f"podman not measured: {ctx.podman.reason}")]
    ctx.engine.images.export(image, out, format="oci-archive")
    loaded = ctx.podman.run("load", "-i", str(out)).stdout.decode()
    name = loaded.strip().splitlines()[-1].split(":", 1)[1].strip()  # "Loaded image: NAME"

    def podman_once() -> float:
        theirs.unlink(missing_ok=True)
        t0 = time.perf_counter()
        ctx.podman.run("save", "--format", "oci-archive", "-o", str(theirs), name)
        return time.perf_counter() - t0

    m = medians({"px": px_once, "podman": podman_once}, ctx.slow, warmup=0)
    ctx.podman.run("rmi", "--force", name, check=False)
    for path in (out, theirs):
        path.unlink(missing_ok=True)
    baseline = "podman save --format oci-archive (uncompressed)"
    note = f"on {os.cpu_count()} cores"
    return [at_most("export_oci", what, m["px"], baseline, m["podman"], 1.2, note=note)]


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (xz, tar)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _tar_xz(root: Path, target: Path) -> None:
    with open(target, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        xz = subprocess.run(["xz", "-T0", "-6", "-c"], stdin=tar.stdout, stdout=out, check=False)
        if tar.wait() != 0 or xz.returncode != 0:
            raise RuntimeError(f"tar | xz failed: {tar.returncode}, {xz.returncode}")


def case_export_xz(ctx: Ctx) -> list[Row]:
    image = _export_image(ctx)
    lxc = ctx.dir / "export-lxc"
    flat = ctx.dir / "export-flat"
    built = ctx.engine.images.get(image)
    # The same tree for the baseline: the layers merged (a rootfs export, unpacked).
    ctx.engine.images.export(image, ctx.dir / "export-flat.tar", format="rootfs")
    flat.mkdir()
    subprocess.run(["tar", "-C", str(flat), "-xf", str(ctx.dir / "export-flat.tar")], check=True)

    cpu: dict[str, list[float]] = {"px": [], "xz": []}

    def px_once() -> float:
        shutil.rmtree(lxc, ignore_errors=True)
        c0, t0 = _cpu(), time.perf_counter()
        ctx.engine.images.export(image, lxc, format="lxc")
        seconds = time.perf_counter() - t0
        cpu["px"].append(_cpu() - c0)
        return seconds

    def xz_once() -> float:
        c0, t0 = _cpu(), time.perf_counter()
        _tar_xz(flat, ctx.dir / "export-baseline.tar.xz")
        seconds = time.perf_counter() - t0
        cpu["xz"].append(_cpu() - c0)
        return seconds

    m = medians({"px": px_once, "xz": xz_once}, ctx.slow, warmup=0)
    for path in (lxc, flat):
        shutil.rmtree(path, ignore_errors=True)
    for name in ("export-flat.tar", "export-baseline.tar.xz"):
        (ctx.dir / name).unlink(missing_ok=True)
    what = f"export a {built.size >> 20} MB image as LXC's meta + rootfs.tar.xz"
    # The CPU time does not move with the load others put on the machine, the wall clock does.
    note = f"CPU time (ours and xz's, median): {median(cpu['px']):.1f} s vs {median(cpu['xz']):.1f} s"
    return [at_most("export_xz", what, m["px"], "tar -c | xz -T0 of the same tree", m["xz"], 1.2, note=note)]


PEAK = """
import resource, sys
from pylxcore import Engine
Engine(root=sys.argv[1]).images.export(sys.argv[2], sys.stdout.buffer, format="oci-archive")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _peak_mb(ctx: Ctx, image: str) -> float:
    proc = subprocess.run([sys.executable, "-c", PEAK, str(ctx.engine.store.root), image],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return int(proc.stderr.split()[-1]) / 1024


def case_export_memory(ctx: Ctx) -> list[Row]:
    image = _export_image(ctx)
    small, big = _peak_mb(ctx, ctx.image), _peak_mb(ctx, image)
    what = f"peak memory of an oci-archive export to a pipe: {EXPORT_MB} MB image minus the busybox image"
    return [absolute("export_memory", what, big - small, "MB", 16,
                     note=f"{big:.0f} MB peak RSS for the big one, {small:.0f} MB for busybox")]


__all__ = ["case_export_oci", "case_export_xz", "case_export_memory"]
