"""The builder: cache keys, executing run and copy layers, build events.

A step's cache key is ``sha256(parent key, the step's canonical form, and what
else decides its result)``: for ``run`` the environment and workdir it runs
with, for ``copy`` the bytes, modes and types of what it copies. A committed
layer is stored under its key, so "is it cached?" is "does the key exist?".
"""

from __future__ import annotations

import _signal as signal  # the C module: "signal" builds its enums at import (~1 ms)
import contextlib
import errno
import os
import shlex
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Literal, Sequence, Union

import attrs

from pylxcore._log import log
from pylxcore.build import bases
from pylxcore.errors import BuildError, ImageNotFound, SpecError, StorageError
from pylxcore.runtime import liblxc as _liblxc
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.lxcconfig import RunConfig, render, split_env
from pylxcore.runtime.rootfs import DIR_FLAGS, LayerStack, make_dir, open_dirs, overlay_spec
from pylxcore.spec import Image, Layer, resolve_copy_source
from pylxcore.store import Store, canonical_json, disk_full, rmtree, sha256_hex

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


# -- reading the build context ------------------------------------------------------
#
# Whoever owns the build context can change it while a build reads it, for
# instance swap a file for a symlink to /etc/shadow between a check and an
# open. So nothing is checked and then opened by path: every component is
# opened relative to its parent directory's fd with O_NOFOLLOW, and the type,
# mode and bytes used are those of the opened fd. Symlinks are read as links,
# never followed. The cache digest and the copy walk the source with the same
# walker, and the copy hashes what it actually wrote: if that is not what the
# cache key was made from, the layer is not committed.

# O_NONBLOCK and O_NOCTTY: the fd must be the inode an lstat just saw as a
# regular file; should it be swapped for a fifo or a tty meanwhile, the open
# must neither block nor take a terminal (the inode check then refuses it).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@attrs.frozen
class _Entry:
    """One thing in a copy source, opened (a symlink is only read)."""

    rel: str  # the path under the copy source, "" for the source itself
    depth: int  # 0 for the source itself
    st: os.stat_result  # of ``fd``; of the link itself for a symlink
    fd: int  # -1 for a symlink
    target: str | None  # a symlink's target


def _changed(path: str, key: str) -> SpecError:
    return SpecError(
        f"{path} changed while the build was reading it; build again once the context stays put", key=key
    )


def _open_at(dir_fd: int, name: str, shown: str, key: str) -> tuple[int, os.stat_result, str | None]:
    """Open ``name`` in the directory ``dir_fd`` without following a symlink.

    Returns (fd, fstat of fd, None) for a directory or regular file, and
    (-1, lstat, target) for a symlink. The lstat only decides how to open (so
    a fifo or device is refused without being opened); what is used is the
    fstat of the opened fd, which must be the inode the lstat saw. ``shown``
    is the path errors name.
    """
    try:
        lst = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(lst.st_mode):
            return -1, lst, os.readlink(name, dir_fd=dir_fd)
        if not (stat.S_ISDIR(lst.st_mode) or stat.S_ISREG(lst.st_mode)):
            raise SpecError(f"{shown} is not a regular file, directory or symlink", key=key)
        fd = os.open(name, DIR_FLAGS if stat.S_ISDIR(lst.st_mode) else _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as err:
        # Gone (ENOENT), now a symlink (ELOOP, from O_NOFOLLOW), no longer a
        # directory (ENOTDIR) or no longer a symlink (EINVAL, from readlink).
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
            raise _changed(shown, key) from err
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (lst.st_dev, lst.st_ino):
        os.close(fd)
        raise _changed(shown, key)
    return fd, st, None


@contextlib.contextmanager
def _opened_source(context: Path, src: str, key: str) -> Iterator[tuple[_Entry, str]]:
    """The copy source ``src`` of ``context``, opened: (its entry, its real path).

    resolve_copy_source applies the rules for ``src`` (relative, no ``..``,
    inside the context after symlinks, existing) and gives its real path,
    which has no symlink in it; that path is then opened component by
    component with O_NOFOLLOW, so a component swapped for a symlink since is
    refused, not followed.
    """
    real = str(resolve_copy_source(context, src, key=key))
    root = os.path.realpath(context)
    rel = os.path.relpath(real, root)
    parts = [] if rel == "." else rel.split("/")
    if ".." in parts:  # the context itself moved since resolve_copy_source
        raise _changed(real, key)
    fd = os.open(root, DIR_FLAGS)  # the context folder itself is the caller's choice
    try:
        for part in parts:
            child, _, target = _open_at(fd, part, real, key)
            os.close(fd)
            fd = child
            if target is not None:
                raise _changed(real, key)
        yield _Entry("", 0, os.fstat(fd), fd, None), real
    finally:
        if fd >= 0:
            os.close(fd)


def _walk(top: _Entry, base: str, key: str) -> Generator[_Entry, None, None]:
    """``top``, then for a directory everything under it: depth first, names
    sorted, each entry opened relative to its parent's fd by ``_open_at``.

    An entry's fd is open until the next entry is asked for, a directory's
    until its subtree is done; the caller owns ``top.fd``. ``base`` is the
    real path of ``top``, for error messages. Use it under contextlib.closing
    so that a consumer's error closes the fds at once.
    """
    yield top
    if not stat.S_ISDIR(top.st.st_mode):
        return
    # The open directories, each with the names it has left (reversed: pop() is the next).
    stack: list[tuple[_Entry, list[str]]] = [(top, sorted(os.listdir(top.fd), reverse=True))]
    try:
        while stack:
            parent, names = stack[-1]
            if not names:
                stack.pop()
                if parent is not top:
                    os.close(parent.fd)
                continue
            name = names.pop()
            rel = f"{parent.rel}/{name}" if parent.rel else name
            fd, st, target = _open_at(parent.fd, name, os.path.join(base, rel), key)
            entry = _Entry(rel, len(stack), st, fd, target)
            if target is None and stat.S_ISDIR(st.st_mode):
                try:
                    children = sorted(os.listdir(fd), reverse=True)
                except BaseException:
                    os.close(fd)
                    raise
                stack.append((entry, children))  # closed by the loop from here on
                yield entry
            else:
                try:
                    yield entry
                finally:
                    if fd >= 0:
                        os.close(fd)
    finally:
        for parent, _ in stack:
            if parent is not top:
                os.close(parent.fd)


class _Digest:
    """What a copy depends on: per entry its path, type, permission bits, and
    the sha256 of its bytes (a file) or of its target (a symlink). Not owners
    or times: the copy makes everything root's."""

    def __init__(self) -> None:
        import hashlib  # noqa: PLC0415  (deferred: 4 ms of every import pylxcore)

        self._h = hashlib.sha256()

    def add(self, entry: _Entry, content: str) -> None:
        """``content``: as _content_sha256 gives it, or _copy_entry returns it."""
        if entry.depth == 0 and stat.S_ISDIR(entry.st.st_mode):
            return  # a directory source's own mode is not copied, only what it holds
        mode = entry.st.st_mode
        # content has a fixed length for the type, so names holding "\n" stay unambiguous
        self._h.update(
            os.fsencode(f"{entry.rel}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0{content}\n")
        )

    def hexdigest(self) -> str:
        return self._h.hexdigest()


# (dev, inode, size, mtime, ctime) -> sha256 of a context file: a cached
# rebuild need not re-read every byte of a large context.
_CONTENT: dict[tuple[int, int, int, int, int], str] = {}
# A file changed this recently may change again within the same timestamp
# tick, unseen by its fingerprint: it is hashed afresh each time (as git does).
_RACY_NS = 2_000_000_000


def _content_sha256(entry: _Entry) -> str:
    """What the digest records for ``entry``'s content, read from its fd."""
    if entry.target is not None:
        return sha256_hex(os.fsencode(entry.target))
    if stat.S_ISDIR(entry.st.st_mode):
        return ""
    import hashlib  # noqa: PLC0415  (deferred: 4 ms of every import pylxcore)

    st = entry.st
    fingerprint = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _CONTENT.get(fingerprint)
    if digest is None:
        h = hashlib.sha256()
        while chunk := os.read(entry.fd, 1 << 20):
            h.update(chunk)
        digest = h.hexdigest()
        if time.time_ns() - st.st_ctime_ns > _RACY_NS:
            if len(_CONTENT) > 100_000:
                _CONTENT.clear()
            _CONTENT[fingerprint] = digest
    return digest


def copy_digest(context: Path, src: str, *, key: str = "copy.src") -> str:
    """The digest of what a copy of ``src`` from ``context`` copies; the same
    as the copy returns when the source did not change meanwhile.

    Raises SpecError (with ``key``) for a source resolve_copy_source refuses,
    a special file (fifo, socket, device), or a source that changes while read.
    """
    digest = _Digest()
    with (
        _opened_source(context, src, key) as (top, base),
        contextlib.closing(_walk(top, base, key)) as entries,
    ):
        for entry in entries:
            digest.add(entry, _content_sha256(entry))
    return digest.hexdigest()


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
                ident["content"] = self._copy_digest(index, layer, ctx)
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
                            staged = self._copy_step(index, layer, layer_keys, ctx, ident["content"])
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
        from pylxcore.spec import validate_image_ref

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
            _, inherited = split_env(env)
            script = f"mkdir -p -- {shlex.quote(workdir)} && cd -- {shlex.quote(workdir)}\n{layer.script}"
            argv = _liblxc.execute_argv(
                name,
                str(staged),
                ["/bin/sh", "-e", "-c", script],
                str(staged / "lxc.log"),
                inherit=[k for k, _ in inherited],
            )
            code, tail = _run_streaming(argv, out, _liblxc.execute_env(inherited))
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

    def _copy_digest(self, index: int, layer: Layer, ctx: Path) -> str:
        with self._copy_errors(index, layer):
            return copy_digest(ctx, layer.src, key=f"layers[{index - 1}].copy.src")

    def _copy_step(self, index: int, layer: Layer, parents: Sequence[str], ctx: Path, digest: str) -> Path:
        """Copy into a staging dir and return it; ``digest`` is what the step's
        cache key was computed from, and what is copied must match it."""
        staged = self.store.staging_dir("copy")
        try:
            with self._copy_errors(index, layer):
                fs = staged / "fs"
                fs.mkdir()
                stack = LayerStack([self.store.layer_dir(k) / "fs" for k in reversed(parents)])
                key = f"layers[{index - 1}].copy.src"
                copied = _copy_into(ctx, layer.src, key, layer.dest, fs, stack, layer.mode)
            if copied != digest:
                raise BuildError(
                    f"{layer.src!r} changed while it was being copied: it is not what the cache key was"
                    " computed from; build again once the context stays put",
                    layer_index=index - 1,
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
                f"copy failed: {err}", layer_index=index - 1, instruction=layer.instruction()
            ) from err


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


def _run_streaming(argv: list[str], out: Callable[[str], None], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run argv with stdout+stderr merged, passing each line to ``out`` as it
    comes; ``env`` is its whole environment (lxc-execute needs none of ours)."""
    import subprocess  # noqa: PLC0415  (deferred: a tenth of import pylxcore)

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_entry(entry: _Entry, dir_fd: int, name: str, mode: int | None) -> tuple[str, int | None]:
    """Create ``name`` in the layer directory ``dir_fd`` as a copy of ``entry``,
    owned by root. Returns what the digest records for it (the sha256 of the
    bytes actually written) and, for a directory, the fd of the new one."""
    if entry.target is not None:
        os.symlink(entry.target, name, dir_fd=dir_fd)
        os.chown(name, 0, 0, dir_fd=dir_fd, follow_symlinks=False)
        return _content_sha256(entry), None
    perms = mode if mode is not None else stat.S_IMODE(entry.st.st_mode)
    if stat.S_ISDIR(entry.st.st_mode):
        return _content_sha256(entry), make_dir(dir_fd, name, 0, 0, perms)
    import hashlib  # noqa: PLC0415  (deferred: 4 ms of every import pylxcore)

    h = hashlib.sha256()
    # O_NOFOLLOW|O_EXCL: the target is new in a fresh layer; never write through a link.
    out = os.open(
        name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
    )
    try:
        while chunk := os.read(entry.fd, 1 << 20):
            h.update(chunk)
            _write_all(out, chunk)
        os.fchown(out, 0, 0)
        os.fchmod(out, perms)
        os.utime(out, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns))
    finally:
        os.close(out)
    return h.hexdigest(), None


def _copy_into(
    context: Path, src: str, key: str, dest: str, fs: Path, stack: LayerStack, mode: int | None
) -> str:
    """Docker COPY semantics of ``src`` (in ``context``) into the fresh layer
    ``fs`` over ``stack``; returns the digest of what was copied.

    A directory source copies its contents into ``dest``; a file source lands
    at ``dest``, or inside it when ``dest`` ends with "/" or is a directory in
    the image. Symlinks in ``dest`` resolve inside the image, never the host;
    symlinks in the source are copied as symlinks.
    """
    digest = _Digest()
    with (
        _opened_source(context, src, key) as (top, base),
        contextlib.closing(_walk(top, base, key)) as entries,
    ):
        next(entries)  # top itself
        if stat.S_ISDIR(top.st.st_mode):
            # dirs[d - 1] is the layer directory the source's entries at depth d go into.
            dirs = [open_dirs(fs, stack, stack.resolve(dest, follow_last=True))]
            try:
                if mode is not None:
                    os.fchmod(dirs[0], mode)
                for entry in entries:
                    while len(dirs) > entry.depth:
                        os.close(dirs.pop())
                    content, made = _copy_entry(entry, dirs[-1], os.path.basename(entry.rel), mode)
                    digest.add(entry, content)
                    if made is not None:
                        dirs.append(made)
            finally:
                for fd in dirs:
                    os.close(fd)
            return digest.hexdigest()
        resolved = stack.resolve(dest, follow_last=True)
        existing = stack.lookup(resolved)
        if dest.endswith("/") or (existing is not None and existing.is_dir() and not existing.is_symlink()):
            parent, name = resolved, os.path.basename(base)
        else:
            resolved = stack.resolve(dest, follow_last=False)
            parent, name = os.path.dirname(resolved), os.path.basename(resolved)
        if not name:
            raise SpecError(f"copy destination {dest!r} names no file", key="copy.dest")
        parent_fd = open_dirs(fs, stack, parent)
        try:
            content, _ = _copy_entry(top, parent_fd, name, mode)
        finally:
            os.close(parent_fd)
        digest.add(top, content)
        return digest.hexdigest()


__all__ = ["Builder", "BuildEvent", "StepResult", "Progress"]
