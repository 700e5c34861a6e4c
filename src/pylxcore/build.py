"""The builder: cache keys, executing run and copy layers, build events.

A step's cache key is ``sha256(parent key, the step's canonical form, and what
else decides its result)``: for ``run`` the environment and workdir it runs
with, for ``copy`` the bytes, modes and types of what it copies. A committed
layer is stored under its key, so "is it cached?" is "does the key exist?".
"""

from __future__ import annotations

import _signal as signal  # the C module: "signal" builds its enums at import (~1 ms)
import errno
import os
import shlex
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union

import attrs

from . import _liblxc, bases
from ._log import log
from .errors import BuildError, ImageNotFound, PylxcoreError, SpecError, StorageError
from .limits import host_layout
from .lxcconfig import RunConfig, render
from .rootfs import LayerStack, overlay_spec
from .spec import Image, Layer, resolve_copy_source
from .store import Store, canonical_json, disk_full, rmtree, sha256_hex

# How many output lines a BuildError carries.
_TAIL = 20


@attrs.frozen
class BuildEvent:
    """One thing that happened during a build, for ``progress=callable``.

    ``kind`` is "step" (a step starts: ``cached`` says whether it will run),
    "output" (one line the step printed, in ``line``), "step_done" (with
    ``seconds``) or "done" (the whole image, with ``image_id``).
    """

    kind: Literal["step", "output", "step_done", "done"]
    index: int  # 0 is the base, 1..N the layers
    total: int
    instruction: str = ""
    cached: bool | None = None
    seconds: float | None = None
    line: str = ""
    image_id: str = ""


Progress = Union[bool, Callable[[BuildEvent], None], None]


@attrs.frozen
class StepResult:
    """How one step of a build went (``BuiltImage.layers``)."""

    index: int
    instruction: str
    digest: str  # the step's key; for steps with files, the layer's address in the store
    size: int  # bytes on disk of the layer (0 for metadata-only steps)
    cached: bool
    seconds: float
    has_files: bool


def step_key(parent: str | None, ident: dict[str, Any]) -> str:
    return "sha256:" + sha256_hex(canonical_json({"parent": parent, "step": ident}))


class _Printer:
    """``progress=True``: docker-build-like lines on stdout."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, ev: BuildEvent) -> None:
        if ev.kind == "step":
            state = "CACHED" if ev.cached else "RUN"
            text = ev.instruction if len(ev.instruction) <= 100 else ev.instruction[:99] + "…"
            print(f"Step {ev.index}/{ev.total - 1} : {text}  [{state}]", file=self.stream, flush=True)
        elif ev.kind == "output":
            print(f"  | {ev.line}", file=self.stream, flush=True)
        elif ev.kind == "step_done":
            print(f"  --> {ev.seconds:.2f}s", file=self.stream, flush=True)
        elif ev.kind == "done":
            print(f"Built {ev.image_id[:19]}  ({ev.seconds:.2f}s)", file=self.stream, flush=True)


def _logged(ev: BuildEvent) -> None:
    if ev.kind == "step":
        log(
            "debug",
            "step %d/%d %s (%s)",
            ev.index,
            ev.total - 1,
            ev.instruction,
            "cached" if ev.cached else "run",
        )
    elif ev.kind == "output":
        log("debug", "step %d: %s", ev.index, ev.line)
    elif ev.kind == "done":
        log("info", "built %s in %.2fs", ev.image_id, ev.seconds or 0.0)


def _emitter(progress: Progress) -> Callable[[BuildEvent], None]:
    """Every event goes to the pylxcore logger, and to the printer or callable asked for."""
    if progress is True:
        printer: Callable[[BuildEvent], None] = _Printer()
    elif callable(progress):
        printer = progress
    else:
        return _logged

    def both(ev: BuildEvent) -> None:
        _logged(ev)
        printer(ev)

    return both


def copy_digest(src: Path) -> str:
    """What a copy of ``src`` depends on: names, types, permission bits, bytes, link targets."""
    import hashlib  # noqa: PLC0415  (deferred: 4 ms of every import pylxcore)

    if src.is_dir() and not src.is_symlink():
        h = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                st = os.lstat(full)
                rel = os.path.relpath(full, src)
                h.update(f"{rel}\0{stat.S_IFMT(st.st_mode):o}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
                if stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(full).encode("utf-8", "surrogateescape"))
                elif stat.S_ISREG(st.st_mode):
                    h.update(bases._file_sha256(str(full)).encode())
                h.update(b"\n")
        return h.hexdigest()
    st = os.lstat(src)
    return sha256_hex(f"{stat.S_IMODE(st.st_mode):o}\0{bases._file_sha256(str(src))}")


class Builder:
    """Builds images into a store. One builder per engine; safe across processes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the whole image -------------------------------------------------------

    def build(
        self,
        image: Image,
        *,
        context: str | os.PathLike[str] | None = None,
        no_cache: bool = False,
        progress: Progress = None,
    ) -> tuple[str, dict[str, Any], list[StepResult]]:
        """Build every step; return (image id, image record, per-step results).

        Raises BuildError for a failing step, SpecError for a copy source that
        is not in the context, ImageNotFound for an ``image:`` base that is not built.
        """
        emit = _emitter(progress)
        ctx = Path(context if context is not None else (image.context or ".")).absolute()
        total = 1 + len(image.layers)
        # A no_cache build gets keys of its own: old layers stay intact for the
        # images and containers that use them, and prune reclaims them later.
        salt = os.urandom(8).hex() if no_cache else None
        results: list[StepResult] = []
        history: list[dict[str, Any]] = []

        # -- the base ------------------------------------------------------------
        t0 = time.monotonic()
        base_instruction = f"FROM {image.base}"
        if image.base.startswith("image:"):
            parent_rec = self._base_image(image.base[len("image:") :])
            layer_keys = list(parent_rec["layers"])
            key = parent_rec["chain"]
            emit(BuildEvent("step", 0, total, base_instruction, cached=True))
            results.append(StepResult(0, base_instruction, key, 0, True, 0.0, False))
        else:
            try:
                key = bases.base_key(image.base)
            except BuildError as err:
                raise BuildError(
                    err.reason, layer_index=0, instruction=base_instruction, output_tail=err.output_tail
                ) from err
            if salt:
                key = step_key(key, {"salt": salt})
            cached = self.store.has_layer(key)
            emit(BuildEvent("step", 0, total, base_instruction, cached=cached))
            if not cached:
                with self.store.lock(f"layer-{key[7:23]}"):
                    if not self.store.has_layer(key):
                        cached = False
                        self._build_base(
                            image.base, key, lambda line: emit(BuildEvent("output", 0, total, line=line))
                        )
            rec = self.store.get_layer(key)
            layer_keys = [key]
            secs = time.monotonic() - t0
            results.append(StepResult(0, base_instruction, key, rec.size, cached, secs, True))
            emit(BuildEvent("step_done", 0, total, base_instruction, cached=cached, seconds=secs))
        history.append({"instruction": base_instruction, "key": key})

        # -- the layers ------------------------------------------------------------
        env: dict[str, str] = dict(image.env)
        workdir = image.workdir
        for index, layer in enumerate(image.layers, start=1):
            t0 = time.monotonic()
            instruction = layer.instruction()
            ident: dict[str, Any] = {"layer": layer.canonical()}
            if salt:
                ident["salt"] = salt
            if layer.kind == "env":
                env.update(dict(layer.env_pairs))
            elif layer.kind == "workdir":
                workdir = layer.path
            elif layer.kind == "run":
                ident["env"] = env
                ident["workdir"] = workdir
            elif layer.kind == "copy":
                src = resolve_copy_source(ctx, layer.src, key=f"layers[{index - 1}].copy.src")
                ident["content"] = copy_digest(src)
            key = step_key(key, ident)
            history.append({"instruction": instruction, "key": key})
            if layer.kind in ("env", "workdir"):
                emit(BuildEvent("step", index, total, instruction, cached=True))
                results.append(StepResult(index, instruction, key, 0, True, 0.0, False))
                emit(BuildEvent("step_done", index, total, instruction, cached=True, seconds=0.0))
                continue
            cached = self.store.has_layer(key)
            emit(BuildEvent("step", index, total, instruction, cached=cached))
            if not cached:
                with self.store.lock(f"layer-{key[7:23]}"):
                    if not self.store.has_layer(key):
                        out = lambda line, i=index: emit(BuildEvent("output", i, total, line=line))  # noqa: E731
                        if layer.kind == "run":
                            staged = self._run_step(index, layer, layer_keys, env, workdir, out)
                        else:
                            staged = self._copy_step(index, layer, layer_keys, ctx)
                        try:
                            self.store.commit_layer(
                                key, staged / "fs", parent=layer_keys[-1], instruction=instruction
                            )
                        finally:
                            rmtree(staged)
            rec = self.store.get_layer(key)
            layer_keys.append(key)
            secs = time.monotonic() - t0
            results.append(StepResult(index, instruction, key, rec.size, cached, secs, True))
            emit(BuildEvent("step_done", index, total, instruction, cached=cached, seconds=secs))

        config = {
            "env": env,
            "workdir": workdir,
            "user": image.user,
            "cmd": list(image.cmd) if image.cmd is not None else None,
            "labels": dict(image.labels),
            "limits": image.limits.to_dict(),
        }
        image_id = "sha256:" + sha256_hex(canonical_json({"layers": layer_keys, "config": config}))
        record = {
            "id": image_id,
            "layers": layer_keys,
            "chain": key,
            "config": config,
            "history": history,
            "base": image.base,
            "created": time.time(),
        }
        return image_id, record, results

    def _base_image(self, ref: str) -> dict[str, Any]:
        from .spec import validate_image_ref

        name = validate_image_ref(ref)
        image_id = self.store.read_refs().get(name)
        record = self.store.get_image_record(image_id) if image_id else None
        if record is None:
            raise ImageNotFound(f"base image {name!r} is not built in this store", name=name)
        return record

    # -- steps ---------------------------------------------------------------

    def _build_base(self, base: str, key: str, out: Callable[[str], None]) -> None:
        staged = self.store.staging_dir("base")
        try:
            (staged / "fs").mkdir()
            try:
                bases.materialize(base, staged / "fs", out)
            except BuildError as err:
                if disk_full(staged):
                    raise StorageError(
                        f"the store's disk is full: base {base!r} does not fit under {self.store.root}",
                        path=str(self.store.root),
                    ) from err
                raise BuildError(
                    err.reason,
                    layer_index=0,
                    instruction=f"FROM {base}",
                    exit_code=err.exit_code,
                    output_tail=err.output_tail,
                ) from err
            except OSError as err:
                raise StorageError(f"cannot prepare base {base!r}: {err}", path=str(staged)) from err
            self.store.commit_layer(key, staged / "fs", parent=None, instruction=f"FROM {base}")
        finally:
            rmtree(staged)

    def _run_step(
        self,
        index: int,
        layer: Layer,
        parents: Sequence[str],
        env: dict[str, str],
        workdir: str,
        out: Callable[[str], None],
    ) -> Path:
        """Run the script in a short-lived container; return the staging dir (its fs/ is the new layer)."""
        staged = self.store.staging_dir("run")
        name = "pxb-" + os.urandom(6).hex()
        try:
            (staged / "fs").mkdir()
            (staged / name).mkdir()
            lowers = [self.store.short_path(k) for k in reversed(parents)]
            cfg = RunConfig(
                name=name,
                rootfs=overlay_spec(lowers, staged / "fs"),
                cgroup_dir=f"pylxcore-{self.store.root_id}-{name}",
                env=sorted(env.items()),
                network="host" if layer.network == "host" else "none",
                resolv_conf=layer.network == "host",
            )
            (staged / name / "config").write_text(render(cfg, host_layout()))
            script = f"mkdir -p -- {shlex.quote(workdir)} && cd -- {shlex.quote(workdir)}\n{layer.script}"
            argv = _liblxc.execute_argv(
                name, str(staged), ["/bin/sh", "-e", "-c", script], str(staged / "lxc.log")
            )
            code, tail = _run_streaming(argv, out)
            if code != 0:
                detail = tail
                lxc_log = (
                    (staged / "lxc.log").read_text(errors="replace").strip()
                    if (staged / "lxc.log").exists()
                    else ""
                )
                if lxc_log:
                    detail = tail + ["[liblxc] " + line for line in lxc_log.splitlines()[-5:]]
                if disk_full(staged) or any("No space left on device" in line for line in tail):
                    raise StorageError(
                        f"the store's disk is full: layer {index - 1} ({layer.instruction()}) could not"
                        f" write its files (script exit code {code}); free space under {self.store.root}",
                        path=str(self.store.root),
                    )
                raise BuildError(
                    f"the script exited with code {code}",
                    layer_index=index - 1,
                    instruction=layer.instruction(),
                    exit_code=code,
                    output_tail=detail[-_TAIL:],
                )
            # The overlay's workdir and the container dir are not part of the layer.
            rmtree(staged / "work")
            return staged
        except BaseException:
            rmtree(staged)
            raise

    def _copy_step(self, index: int, layer: Layer, parents: Sequence[str], ctx: Path) -> Path:
        staged = self.store.staging_dir("copy")
        try:
            fs = staged / "fs"
            fs.mkdir()
            src = resolve_copy_source(ctx, layer.src, key=f"layers[{index - 1}].copy.src")
            stack = LayerStack([self.store.layer_dir(k) / "fs" for k in reversed(parents)])
            _copy_into(src, layer.dest, fs, stack, layer.mode)
            return staged
        except PylxcoreError:
            rmtree(staged)
            raise
        except OSError as err:
            rmtree(staged)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageError(
                    f"the store's disk is full: copy {layer.src!r} could not be written",
                    path=str(self.store.root),
                ) from err
            raise BuildError(
                f"copy failed: {err}", layer_index=index - 1, instruction=layer.instruction()
            ) from err
        except BaseException:
            rmtree(staged)
            raise


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn that ties the build container's lifetime to the builder's.

    A builder killed at any instant must not leave its step running: one that
    began exec'ing as its parent died would outlive every cleanup (and
    liblxc would recreate the removed staging dir for its log). PR_SET_PDEATHSIG
    ends the child with its parent; the getppid() check closes the window in
    which the parent died before the signal was armed."""
    import ctypes  # noqa: PLC0415  (only builds need it)

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return preexec


def _run_streaming(argv: list[str], out: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run argv with stdout+stderr merged, passing each line to ``out`` as it comes."""
    import subprocess  # noqa: PLC0415  (deferred: a tenth of import pylxcore)

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent(),
    )
    assert proc.stdout is not None
    tail: list[str] = []
    buf = b""
    fd = proc.stdout.fileno()
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                out(line)
                tail.append(line)
            del tail[:-_TAIL]
        if buf:
            line = buf.decode("utf-8", "replace")
            out(line)
            tail.append(line)
        return proc.wait(), tail[-_TAIL:]
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()


def _ensure_dirs(fs: Path, stack: LayerStack, path: str) -> Path:
    """Create ``path`` (resolved, absolute) as directories in ``fs``, copying the
    owner and mode of directories the lower layers already have there, so that
    the new layer does not change them (e.g. /tmp stays 1777)."""
    current = fs
    parts = [p for p in path.split("/") if p]
    for i, comp in enumerate(parts):
        current = current / comp
        if current.exists():
            continue
        lower = stack.lookup("/" + "/".join(parts[: i + 1]))
        if lower is not None and lower.is_dir() and not lower.is_symlink():
            st = os.lstat(lower)
            current.mkdir()
            os.chown(current, st.st_uid, st.st_gid)
            os.chmod(current, stat.S_IMODE(st.st_mode))
        else:
            current.mkdir(mode=0o755)
            os.chmod(current, 0o755)
    return current


def _copy_file(src: Path, target: Path, mode: int | None) -> None:
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), target)
        os.lchown(target, 0, 0)
        return
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{src} is not a regular file, directory or symlink", key="copy.src")
    # O_NOFOLLOW|O_EXCL: the target is new in a fresh layer; never write through a link.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with open(src, "rb") as fin:
            while True:
                chunk = fin.read(1 << 20)
                if not chunk:
                    break
                os.write(fd, chunk)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, mode if mode is not None else stat.S_IMODE(st.st_mode))
    finally:
        os.close(fd)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_into(src: Path, dest: str, fs: Path, stack: LayerStack, mode: int | None) -> None:
    """Docker COPY semantics into the fresh layer ``fs`` over ``stack``.

    A directory source copies its contents into ``dest``; a file source lands
    at ``dest``, or inside it when ``dest`` ends with "/" or is a directory in
    the image. Symlinks in ``dest`` resolve inside the image, never the host.
    """
    into_dir = dest.endswith("/")
    if src.is_dir() and not src.is_symlink():
        target_dir = stack.resolve(dest, follow_last=True)
        root = _ensure_dirs(fs, stack, target_dir)
        if mode is not None:
            os.chmod(root, mode)
        for dirpath, dirnames, filenames in os.walk(src):
            rel = os.path.relpath(dirpath, src)
            here = root if rel == "." else root / rel
            for name in sorted(dirnames):
                s = Path(dirpath) / name
                t = here / name
                if s.is_symlink():
                    _copy_file(s, t, None)
                    continue
                st = os.lstat(s)
                t.mkdir()
                os.chown(t, 0, 0)
                os.chmod(t, mode if mode is not None else stat.S_IMODE(st.st_mode))
            for name in sorted(filenames):
                _copy_file(Path(dirpath) / name, here / name, mode)
        return
    resolved = stack.resolve(dest, follow_last=True)
    existing = stack.lookup(resolved)
    if into_dir or (existing is not None and existing.is_dir() and not existing.is_symlink()):
        parent, name = resolved, src.name
    else:
        resolved = stack.resolve(dest, follow_last=False)
        parent, name = os.path.dirname(resolved), os.path.basename(resolved)
    if not name:
        raise SpecError(f"copy destination {dest!r} names no file", key="copy.dest")
    target_parent = _ensure_dirs(fs, stack, parent)
    _copy_file(src, target_parent / name, mode)


__all__ = ["Builder", "BuildEvent", "StepResult", "Progress"]
