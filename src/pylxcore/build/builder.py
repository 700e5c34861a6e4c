"""The builder: cache keys, and executing the base, run and copy steps of an image.

A step's cache key is ``sha256(parent key, the step's canonical form, and what
else decides its result)``: for ``run`` the environment and workdir it runs
with, for ``copy`` the bytes, modes and types of what it copies. A committed
layer is stored under its key, so "is it cached?" is "does the key exist?".
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import attrs

from pylxcore.build import bases
from pylxcore.build.copy import copy_digest, copy_into, ignore_skip
from pylxcore.build.progress import BuildEvent, Progress, emitter
from pylxcore.build.recorder import reads_for_build
from pylxcore.errors import BuildError, ImageNotFound, SpecError, StorageError
from pylxcore.runtime import liblxc
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.lxcconfig import RunConfig, render, split_env
from pylxcore.runtime.rootfs import LayerStack, overlay_spec
from pylxcore.spec import Image, Layer
from pylxcore.store import Store, canonical_json, disk_full, rmtree, sha256_hex
from pylxcore.store.records import HistoryStep, ImageRecord

if TYPE_CHECKING:
    from pylxcore.build.recorder import Reads

# How many output lines a BuildError carries.
_TAIL = 20


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
    ) -> tuple[str, ImageRecord, list[StepResult]]:
        """Build every step; return (image id, image record, per-step results).

        Raises BuildError for a failing step, SpecError for a copy source that
        is not in the context, ImageNotFound for an ``image:`` base that is not built.
        Under the command line's recording session, every input read to decide
        the cache is recorded as it was read (build/recorder.py).
        """
        emit = emitter(progress)
        reads = reads_for_build(self.store, no_cache=no_cache)
        if reads is not None:
            emit = reads.watching(emit)
        ctx = Path(context if context is not None else (image.context or ".")).absolute()
        total = 1 + len(image.layers)
        # A no_cache build gets keys of its own: old layers stay intact for the
        # images and containers that use them, and prune reclaims them later.
        salt = os.urandom(8).hex() if no_cache else None
        results: list[StepResult] = []
        history: list[HistoryStep] = []

        # -- the base ------------------------------------------------------------
        t0 = time.monotonic()
        base_instruction = f"FROM {image.base}"
        if image.base.startswith("image:"):
            parent_rec = self._base_image(image.base[len("image:") :], reads)
            layer_keys = list(parent_rec.layers)
            key = parent_rec.chain
            emit(BuildEvent("step", 0, total, base_instruction, cached=True))
            results.append(StepResult(0, base_instruction, key, 0, True, 0.0, False))
        else:
            try:
                key = bases.base_key(image.base, reads)
            except BuildError as err:
                raise BuildError(
                    err.reason, step=0, instruction=base_instruction, output_tail=err.output_tail
                ) from err
            if salt:
                key = step_key(key, {"salt": salt})
            cached = self._has_layer(key, reads)
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
        history.append(HistoryStep(base_instruction, key))

        # -- the layers ------------------------------------------------------------
        env: dict[str, str] = dict(image.env)
        workdir = image.workdir
        for index, layer in enumerate(image.layers, start=1):
            t0 = time.monotonic()
            instruction = layer.instruction()
            fetched: Path | None = None  # ADD URL: the folder the file was fetched into
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
            elif layer.kind == "copy" and layer.stage is not None:
                # COPY --from: the stage's chain key names its files; they are read only to copy.
                stage_out = lambda line, i=index: emit(BuildEvent("output", i, total, line=line))  # noqa: E731
                stage_layers = self._stage_layers(index, layer, ctx, no_cache, stage_out)
                ident["content"] = {"stage": stage_layers[-1], "src": layer.src}
            elif layer.kind == "copy" and layer.url:
                stage_layers = []
                if reads is not None:
                    reads.refuse(f"{layer.url} is fetched anew by every build")
                from pylxcore.build.fetch import fetch_staged  # (only ADD of a URL needs it)

                fetched = fetch_staged(self.store, layer, step=index, instruction=instruction)
                ident["content"] = self._copy_digest(index, layer, fetched, None)
            elif layer.kind == "copy":
                stage_layers = []
                ident["content"] = self._copy_digest(index, layer, ctx, reads)
            key = step_key(key, ident)
            history.append(HistoryStep(instruction, key))
            if layer.kind in ("env", "workdir"):
                emit(BuildEvent("step", index, total, instruction, cached=True))
                results.append(StepResult(index, instruction, key, 0, True, 0.0, False))
                emit(BuildEvent("step_done", index, total, instruction, cached=True, seconds=0.0))
                continue
            cached = self._has_layer(key, reads)
            emit(BuildEvent("step", index, total, instruction, cached=cached))
            if not cached:
                with self.store.lock(f"layer-{key[7:23]}"):
                    if not self.store.has_layer(key):
                        out = lambda line, i=index: emit(BuildEvent("output", i, total, line=line))  # noqa: E731
                        if layer.kind == "run":
                            staged = self._run_step(index, layer, layer_keys, env, workdir, out)
                        else:
                            staged = self._copy_step(
                                index, layer, layer_keys, fetched or ctx, ident["content"], stage_layers
                            )
                        try:
                            self.store.commit_layer(
                                key, staged / "fs", parent=layer_keys[-1], instruction=instruction
                            )
                        finally:
                            rmtree(staged)
            if fetched is not None:
                rmtree(fetched)
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
        # The rest of Docker's config, only when set: images without them keep their ids.
        extra = {
            "entrypoint": list(image.entrypoint) if image.entrypoint is not None else None,
            "exposed_ports": list(image.exposed_ports),
            "volumes": list(image.volumes),
            "stop_signal": image.stop_signal,
            "healthcheck": image.healthcheck.to_dict() if image.healthcheck is not None else None,
            "onbuild": list(image.onbuild),
        }
        config.update({k: v for k, v in extra.items() if v})
        image_id = "sha256:" + sha256_hex(canonical_json({"layers": layer_keys, "config": config}))
        record = ImageRecord(
            id=image_id,
            layers=tuple(layer_keys),
            chain=key,
            config=config,
            history=tuple(history),
            base=image.base,
            created=time.time(),
        )
        if reads is not None:
            reads.image_id = image_id
        return image_id, record, results

    def _has_layer(self, key: str, reads: Reads | None) -> bool:
        """Whether step ``key`` is cached; ``reads`` learns what said so."""
        cached = self.store.has_layer(key)
        if reads is not None:
            # The file whose presence Store.has_layer asks about: a committed layer's record.
            reads.exists(str(self.store.layer_dir(key) / "meta.json"), cached)
        return cached

    def _base_image(self, ref: str, reads: Reads | None) -> ImageRecord:
        """The record of the image an ``image:`` base names; ``reads`` learns the ref and the record."""
        from pylxcore.spec import validate_image_ref

        name = validate_image_ref(ref)
        image_id = self.store.read_refs().get(name)
        record = None
        if image_id:
            path = self.store.image_path(image_id)
            try:
                # Taken before the read: a fact is about what was read.
                st = os.stat(path) if reads is not None else None
            except FileNotFoundError:
                st = None
            else:
                record = self.store.get_image_record(image_id)
        if record is None or image_id is None:
            raise ImageNotFound(f"base image {name!r} is not built in this store", name=name)
        if reads is not None and st is not None:
            reads.ref(name, image_id)
            reads.saw_json(str(path), st, record.to_json())
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
                    step=0,
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
            uid, gid = self._owner(index, layer, layer.user, parents)
            cfg = RunConfig(
                uid=uid,
                gid=gid,
                name=name,
                rootfs=overlay_spec(lowers, staged / "fs"),
                cgroup_dir=f"pylxcore-{self.store.root_id}-{name}",
                env=sorted(env.items()),
                network="host" if layer.network == "host" else "none",
                resolv_conf=layer.network == "host",
            )
            (staged / name / "config").write_text(render(cfg, host_layout()))
            _, inherited = split_env(env)
            script = f"mkdir -p -- {shlex.quote(workdir)} && cd -- {shlex.quote(workdir)}\n{layer.script}"
            argv = liblxc.execute_argv(
                name,
                str(staged),
                ["/bin/sh", "-e", "-c", script],
                str(staged / "lxc.log"),
                inherit=[k for k, _ in inherited],
            )
            code, tail = _run_streaming(argv, out, liblxc.execute_env(inherited))
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
                    step=index,
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

    def _owner(self, index: int, layer: Layer, user: str, parents: Sequence[str]) -> tuple[int, int]:
        """uid and gid of a step's ``user`` (a run step's user, a copy's owner) in the image so far."""
        if not user:
            return 0, 0
        from pylxcore.runtime.users import lookup_user  # (only Dockerfile steps name users)

        stack = LayerStack([self.store.layer_dir(k) / "fs" for k in reversed(parents)])
        try:
            return lookup_user(stack, user)
        except SpecError as err:
            raise BuildError(err.reason, step=index, instruction=layer.instruction()) from None

    def _copy_digest(self, index: int, layer: Layer, ctx: Path, reads: Reads | None) -> str:
        with self._copy_errors(index, layer):
            return copy_digest(
                ctx,
                layer.src,
                key=f"layers[{index - 1}].copy.src",
                reads=reads,
                skip=ignore_skip(layer.src, layer.exclude),
            )

    def _stage_layers(
        self, index: int, layer: Layer, ctx: Path, no_cache: bool, out: Callable[[str], None]
    ) -> list[str]:
        """The layer keys of a copy's ``stage`` image, built (from cache when it
        can be) first, then its chain key (which names all it holds). ``out``
        shows the stage's steps and output as lines of this step."""
        assert layer.stage is not None

        def shown(ev: BuildEvent) -> None:
            if ev.kind == "step":
                out(f"[--from] {ev.instruction}" + ("  [CACHED]" if ev.cached else ""))
            elif ev.kind == "output":
                out(f"[--from] {ev.line}")

        try:
            _, record, _ = self.build(layer.stage, context=ctx, no_cache=no_cache, progress=shown)
        except BuildError as err:
            raise BuildError(
                f"the stage it copies from failed: {err}",
                step=index,
                instruction=layer.instruction(),
                exit_code=err.exit_code,
                output_tail=err.output_tail,
            ) from err
        return [*record.layers, record.chain]

    def _copy_step(
        self,
        index: int,
        layer: Layer,
        parents: Sequence[str],
        ctx: Path,
        digest: object,
        stage_layers: list[str],
    ) -> Path:
        """Copy into a staging dir and return it; ``digest`` is what the step's
        cache key was computed from, and what is copied must match it. With
        ``stage_layers`` (COPY --from), the source is those layers' files."""
        staged = self.store.staging_dir("copy")
        try:
            with self._copy_errors(index, layer):
                fs = staged / "fs"
                fs.mkdir()
                src = layer.src
                owner: tuple[int, int] | None = self._owner(index, layer, layer.owner, parents)
                if stage_layers:
                    from pylxcore.build.fromstage import materialize_source

                    ctx = staged / "from"
                    ctx.mkdir()
                    trees = [self.store.layer_dir(k) / "fs" for k in stage_layers[:-1]]
                    src = materialize_source(trees, layer.src, ctx)
                elif layer.extract:
                    from pylxcore.spec import resolve_copy_source

                    archive = resolve_copy_source(ctx, layer.src)
                    ctx, src, owner = staged / "from", ".", None  # the archive's owners are kept
                    ctx.mkdir()
                    bases.extract_tar(str(archive), ctx, lambda line: None)
                stack = LayerStack([self.store.layer_dir(k) / "fs" for k in reversed(parents)])
                key = f"layers[{index - 1}].copy.src"
                # .dockerignore is the context's: not for a stage's files or an archive's.
                own_files = src == layer.src and not layer.extract
                skip = ignore_skip(layer.src, layer.exclude) if own_files else None
                copied = copy_into(ctx, src, key, layer.dest, fs, stack, layer.mode, owner=owner, skip=skip)
                if stage_layers or layer.extract:
                    rmtree(ctx)  # what was copied is what the key names: the stage's, the archive's
                    return staged
            if copied != digest:
                raise BuildError(
                    f"{layer.src!r} changed while it was being copied: it is not what the cache key was"
                    " computed from; build again once the context stays put",
                    step=index,
                    instruction=layer.instruction(),
                )
            return staged
        except BaseException:
            rmtree(staged)
            raise

    @contextlib.contextmanager
    def _copy_errors(self, index: int, layer: Layer) -> Iterator[None]:
        """A copy's OSErrors as typed errors: a full disk is the store's, the rest the step's."""
        try:
            yield
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageError(
                    f"the store's disk is full: copy {layer.src!r} could not be written",
                    path=str(self.store.root),
                ) from err
            raise BuildError(
                f"copy failed: {err}", step=index, instruction=layer.instruction()
            ) from err


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn that ties the build container's lifetime to the builder's.

    A builder killed at any instant must not leave its step running: one that
    began exec'ing as its parent died would outlive every cleanup (and
    liblxc would recreate the removed staging dir for its log). PR_SET_PDEATHSIG
    ends the child with its parent; the getppid() check closes the window in
    which the parent died before the signal was armed."""
    import ctypes  # (only builds need it)
    import signal  # (only builds that run a step need it)

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(137)

    return preexec


def _run_streaming(argv: list[str], out: Callable[[str], None], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run argv with stdout+stderr merged, passing each line to ``out`` as it
    comes; ``env`` is its whole environment (lxc-execute needs none of ours)."""
    import subprocess  # (deferred: a tenth of import pylxcore)

    proc = subprocess.Popen(
        argv,
        env=env,
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


__all__ = ["Builder", "StepResult", "step_key"]
