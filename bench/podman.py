"""podman (with runc) as a baseline, with a store of its own inside the bench dir.

crun refuses this host's hybrid cgroup layout, so podman runs with
``--runtime runc``; it also needs explicit ulimits here. Everything podman
keeps (images, containers, run state, its tmp) lives under ``DIR/podman``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

IMAGE = "localhost/pxbench-busybox"
Completed = subprocess.CompletedProcess[bytes]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def ensure_installed(log_path: Path) -> str | None:
    """Install podman and runc from Debian's packages if missing; None when usable, else why not."""
    if shutil.which("podman") and shutil.which("runc"):
        return None
    if not shutil.which("apt-get"):
        return "podman/runc are not installed and there is no apt-get to install them"
    with open(log_path, "w") as log:
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "podman", "runc"]):
            env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, check=False, timeout=900)
            if proc.returncode != 0:
                return f"`{' '.join(argv)}` failed (exit {proc.returncode}, see {log_path})"
    return None


class Podman:
    def __init__(self, bench_dir: Path) -> None:
        self.dir = bench_dir / "podman"
        self.reason: str | None = None  # why podman cannot be measured, if it cannot

    def argv(self, *args: str) -> list[str]:
        return [
            "podman", "--root", str(self.dir / "root"), "--runroot", str(self.dir / "runroot"),
            "--tmpdir", str(self.dir / "tmp"), "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            "--events-backend", "none", *args,
        ]

    def run(self, *args: str, check: bool = True, input_: bytes | None = None) -> Completed:
        proc = subprocess.run(self.argv(*args), input=input_, capture_output=True, check=False)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"podman {args[0]} failed (exit {proc.returncode}): {err[-1] if err else ''}")
        return proc

    def setup(self, rootfs: Path) -> None:
        """Install if needed, import the busybox root as an image, try one run; ``reason`` says why not."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.reason = ensure_installed(self.dir.parent / "apt.log")
        if self.reason:
            return
        try:
            tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
            self.run("import", "-", IMAGE, input_=tar.stdout)
            self.run_rm()
        except (RuntimeError, subprocess.CalledProcessError, OSError) as err:
            self.reason = f"podman cannot run here: {err}"

    def run_rm(self) -> None:
        self.run("run", "--rm", "--network", "none", *ULIMITS, IMAGE, "true")

    def start_idle(self, name: str) -> None:
        self.run("run", "-d", "--name", name, "--network", "none", *ULIMITS, IMAGE, "sleep", "3600")

    def exec_true(self, name: str) -> None:
        self.run("exec", name, "true")

    def build(self, context: Path, tag: str) -> None:
        self.run("build", "--network", "none", *ULIMITS, "-t", tag, "-f", str(context / "Containerfile"),
                 str(context))

    def cleanup(self) -> None:
        """Remove podman's containers and images; the caller removes the dir itself."""
        if self.dir.exists() and shutil.which("podman"):
            self.run("rm", "--all", "--force", "--time", "0", check=False)
            self.run("rmi", "--all", "--force", check=False)


def containerfile(layers: list[str]) -> str:
    return "\n".join([f"FROM {IMAGE}", *(f"RUN {script}" for script in layers)]) + "\n"
