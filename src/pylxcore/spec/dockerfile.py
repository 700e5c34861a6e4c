"""Dockerfiles as Images: Docker's parser splits the file, this module gives each instruction its meaning.

The ``dockerfile`` package is moby/buildkit's own Go parser (line
continuations, JSON forms, heredocs, directives); nothing here re-parses the
grammar. Arguments then go through Docker's word rules
(spec/dockerwords.py) and become spec values: ``RUN``, ``COPY`` and ``ADD``
become run and copy layers, ``ENV`` and ``WORKDIR`` env and workdir layers,
and the rest the image's config. A stage built ``FROM`` another stage
continues that stage's layers, so both share the cache; only the stages the
target stands on are read. Anything this cannot do faithfully is refused
with a SpecError naming the file, the line and the instruction.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NoReturn, TypeVar

import attrs

from pylxcore.errors import SpecError
from pylxcore.spec.dockerignore import IgnoreRules, ignore_files, read_dockerignore
from pylxcore.spec.dockerwords import WordError, process_word
from pylxcore.spec.layer import Layer

__all__ = ["read_dockerfile"]

T = TypeVar("T")

# What an image's processes see in PATH when the image sets none (the
# busybox and debian bases set none, as Docker's images of them do set this).
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_STAGE_NAME_RE = r"[a-z][a-z0-9_.-]*"


@attrs.define(eq=False)  # each stage is itself: stages.index() finds this one
class Stage:
    """What one build stage has gathered so far (mutable while its instructions are read)."""

    name: str
    base: str
    line: int
    from_cmd: Any = None  # the FROM instruction, for errors
    commands: list[Any] = attrs.field(factory=list)
    layers: list[Layer] = attrs.field(factory=list)
    env: dict[str, str] = attrs.field(factory=dict)
    # What a local base image's config gives the Image (its ENV and WORKDIR
    # come before the Dockerfile's steps); the rest goes into the fields below.
    image_env: dict[str, str] = attrs.field(factory=dict)
    image_workdir: str = "/"
    args: dict[str, str | None] = attrs.field(factory=dict)
    workdir: str = "/"
    user: str = ""
    shell: tuple[str, ...] = ("/bin/sh", "-c")
    cmd: tuple[str, ...] | None = None
    cmd_set: bool = False
    entrypoint: tuple[str, ...] | None = None
    labels: dict[str, str] = attrs.field(factory=dict)
    ports: list[str] = attrs.field(factory=list)
    volumes: list[str] = attrs.field(factory=list)
    stop_signal: str | None = None
    healthcheck: Any = None
    onbuild: list[str] = attrs.field(factory=list)  # this stage's ONBUILD instructions
    triggers: list[str] = attrs.field(factory=list)  # its base's, run first (Docker's OnBuild)

    def inherit(self, parent: Stage) -> None:
        """Continue ``parent`` (a FROM of an earlier stage): its layers and config, not its ARGs."""
        self.base = parent.base
        self.layers = list(parent.layers)
        self.env = dict(parent.env)
        self.image_env = dict(parent.image_env)
        for name in (
            "image_workdir",
            "workdir",
            "user",
            "shell",
            "cmd",
            "entrypoint",
            "stop_signal",
            "healthcheck",
        ):
            setattr(self, name, getattr(parent, name))
        self.labels = dict(parent.labels)
        self.ports = list(parent.ports)
        self.volumes = list(parent.volumes)
        self.triggers = list(parent.onbuild)

    def words_env(self) -> dict[str, str]:
        """What ``$NAME`` means in this stage now: its ARGs with values, its ENV over them."""
        env = {k: v for k, v in self.args.items() if v is not None}
        env.update(self.env)
        return env


class Reader:
    """Reads one Dockerfile: its stages, then the instructions of the stages the target needs."""

    def __init__(
        self,
        path: str,
        build_args: Mapping[str, str],
        context: str | None,
        make: Callable[[dict[str, Any]], Any],
        base_config: Callable[[str], Any] | None = None,
    ) -> None:
        self.path = path
        self.make = make
        self.base_config = base_config
        self.build_args = dict(build_args)
        self.context = context
        self.escape = "\\"
        self.ignore = IgnoreRules()
        self.cmd: Any = None  # the instruction being read, for errors
        self.globbed: list[str] = []  # wildcard sources, expanded against the context
        self.meta: dict[str, str | None] = {}  # the ARGs before the first FROM
        self.stages: list[Stage] = []
        self.done: dict[int, Stage] = {}

    # -- errors --------------------------------------------------------------

    def fail(self, reason: str, cmd: Any = None) -> NoReturn:
        cmd = cmd if cmd is not None else self.cmd
        if cmd is None:
            raise SpecError(reason, path=self.path)
        raise SpecError(reason, key=cmd.cmd, path=self.path, line=cmd.start_line)

    def word(self, text: str, env: Mapping[str, str]) -> str:
        try:
            return process_word(text, env, escape=self.escape)
        except WordError as err:
            self.fail(str(err))

    def flags(self, allowed: Sequence[str]) -> dict[str, str]:
        """The ``--name=value`` flags of the current instruction, only those allowed."""
        out: dict[str, str] = {}
        for flag in self.cmd.flags:
            name, eq, value = flag[2:].partition("=")
            if name not in allowed:
                what = f"flag --{name}" if name else f"flag {flag!r}"
                supported = ", ".join("--" + a for a in allowed) or "none"
                self.fail(f"{what} is not supported (supported: {supported})")
            out[name] = value if eq else "true"
        return out

    # -- the file ------------------------------------------------------------

    def read(self, text: str, target: str | None) -> Stage:
        import dockerfile  # (deferred: only Dockerfile builds load Go's parser)

        match = re.match(r"(?:#[^\n]*\n)*?#\s*escape\s*=\s*(\S)", text)
        if match and match.group(1) in ("`", "\\"):
            self.escape = match.group(1)
        try:
            commands = dockerfile.parse_string(text)
        except dockerfile.GoParseError as err:
            line_match = re.search(r"line (\d+)", str(err))
            raise SpecError(
                f"cannot parse the Dockerfile: {err}",
                path=self.path,
                line=int(line_match.group(1)) if line_match else None,
            ) from None
        # Docker's automatic platform ARGs: this host's, the only platform built.
        meta: dict[str, str | None] = dict(_platform_args())
        stages: list[Stage] = []
        for cmd in commands:
            cmd = cmd._replace(cmd=cmd.cmd.upper())  # instructions are not case-sensitive
            self.cmd = cmd
            if cmd.cmd == "FROM":
                stages.append(self.from_(cmd, meta, stages))
            elif not stages:
                if cmd.cmd != "ARG":
                    self.fail("only ARG may come before the first FROM")
                from pylxcore.spec.dockersteps import declare_args

                declare_args(self, cmd.value, meta, {})
            else:
                stages[-1].commands.append(cmd)
        self.cmd = None
        if not stages:
            self.fail("the Dockerfile has no FROM instruction")
        chosen = stages[-1]
        if target is not None:
            named = [s for s in stages if s.name == target.lower()]
            if not named:
                names = ", ".join(s.name for s in stages if s.name) or "none"
                raise SpecError(f"target stage {target!r} not found (stages: {names})", path=self.path)
            chosen = named[0]
        self.meta = meta
        self.stages = stages
        return self.stage(stages.index(chosen))

    def from_(self, cmd: Any, meta: dict[str, str | None], stages: list[Stage]) -> Stage:
        flags = self.flags(("platform",))
        if "platform" in flags:
            platform = self.word(flags["platform"], {k: v for k, v in meta.items() if v is not None})
            host = _host_platform()
            if platform != host:
                self.fail(f"--platform={platform} is not this host's platform ({host}); only that is built")
        values = list(cmd.value)
        name = ""
        if len(values) == 3 and values[1].upper() == "AS":
            name = values[2].lower()
            if not re.fullmatch(_STAGE_NAME_RE, name):
                self.fail(
                    f"invalid stage name {values[2]!r}:"
                    " letters, digits, '_', '.', '-', starting with a letter"
                )
            if any(s.name == name for s in stages):
                self.fail(f"duplicate stage name {name!r}")
        elif len(values) != 1:
            self.fail("expected FROM IMAGE [AS NAME]")
        ref = self.word(values[0], {k: v for k, v in meta.items() if v is not None})
        if not ref:
            self.fail(f"FROM {values[0]!r} names no image (an ARG without a value?)")
        return Stage(name=name, base=ref, line=cmd.start_line, from_cmd=cmd)

    # -- a stage ---------------------------------------------------------------

    def stage(self, index: int) -> Stage:
        """Stage ``index`` with all its instructions read (each stage once)."""
        if index in self.done:
            return self.done[index]
        stage = self.stages[index]
        ref = stage.base
        earlier = [i for i, s in enumerate(self.stages[:index]) if s.name and s.name == ref.lower()]
        if earlier:
            stage.inherit(self.stage(earlier[-1]))
        else:
            stage.base = self.base(ref, stage)
        from pylxcore.spec.dockersteps import apply, run_triggers  # (the instructions, one by one)

        outer = self.cmd  # a COPY --from of another stage reads that stage in the middle of its own
        run_triggers(self, stage)
        for cmd in stage.commands:
            self.cmd = cmd
            apply(self, stage, cmd)
        self.cmd = outer
        self.done[index] = stage
        return stage

    def base(self, ref: str, stage: Stage) -> str:
        """The pylxcore base of ``FROM ref``: scratch, busybox, debian:SUITE, else a local image."""
        if ref == "scratch":
            return "scratch"
        if ref == "busybox" or ref.startswith("debian:"):
            stage.env["PATH"] = _DEFAULT_PATH
            return ref
        from pylxcore.spec.names import validate_image_ref

        try:
            name = validate_image_ref(ref)
        except SpecError as err:
            self.fail(f"invalid image {ref!r}: {err.reason}", stage.from_cmd)
        if self.base_config is not None:
            self.inherit_config(name, stage)
        return "image:" + name

    def inherit_config(self, name: str, stage: Stage) -> None:
        """As Docker does, a stage starts with the config of the local image it is built FROM."""
        from pylxcore.errors import NotFound

        try:
            assert self.base_config is not None
            cfg = self.base_config(name)
        except NotFound as err:
            self.fail(
                f"no image {name!r} in the store to build FROM (pylxcore pull {name} brings one): {err}",
                stage.from_cmd,
            )
        stage.image_env = dict(cfg.env)
        stage.env = {"PATH": _DEFAULT_PATH, **cfg.env}
        stage.image_workdir = stage.workdir = cfg.workdir
        stage.user = "" if cfg.user == "root" else cfg.user
        stage.cmd, stage.entrypoint = cfg.cmd, cfg.entrypoint
        stage.labels = dict(cfg.labels)
        stage.ports, stage.volumes = list(cfg.exposed_ports), list(cfg.volumes)
        stage.stop_signal, stage.healthcheck = cfg.stop_signal, cfg.healthcheck
        stage.triggers = list(cfg.onbuild)

    def image(self, stage: Stage) -> Any:
        """The Image of ``stage`` as it stands (``make`` of its values)."""
        try:
            return self.make(
                dict(
                    base=stage.base,
                    env=stage.image_env,
                    workdir=stage.image_workdir,
                    layers=stage.layers,
                    user=stage.user or "root",
                    cmd=stage.cmd,
                    labels=stage.labels,
                    entrypoint=stage.entrypoint,
                    exposed_ports=stage.ports,
                    volumes=stage.volumes,
                    stop_signal=stage.stop_signal,
                    healthcheck=stage.healthcheck,
                    onbuild=stage.onbuild,
                    context=self.context,
                )
            )
        except SpecError as err:
            raise SpecError(err.reason, key=err.key, path=self.path, line=stage.line) from None

    def copy_from(self, ref: str, current: Stage) -> Any:
        """The Image ``COPY --from=ref`` copies from: an earlier stage (by name
        or number) with all it needs, else an image as FROM names one."""
        index = self.stages.index(current)
        for i, stage in enumerate(self.stages[:index]):
            if stage.name == ref.lower() or ref == str(i):
                return self.image(self.stage(i))
        if ref.isdigit() or any(s.name == ref.lower() for s in self.stages):
            self.fail(f"--from={ref} names no earlier stage")
        source = Stage(name="", base=ref, line=self.cmd.start_line, from_cmd=self.cmd)
        source.base = self.base(ref, source)
        return self.image(source)

    def is_archive(self, rel: str) -> bool:
        """Whether the context file ``rel`` is a tar archive (plain, gzip, bzip2, xz), which ADD unpacks."""
        import tarfile  # (only ADD needs it)

        assert self.context is not None
        path = os.path.join(self.context, rel)
        try:
            return os.path.isfile(path) and tarfile.is_tarfile(path)
        except OSError as err:
            self.fail(f"cannot read {rel!r}: {err.strerror or err}")

    def copy_source(self, raw: str) -> list[str]:
        """The context paths a COPY/ADD source names (wildcards expanded), checked against .dockerignore."""
        rel = posixpath.normpath(raw.lstrip("/")) if raw.strip("/") else "."
        if rel == ".." or rel.startswith("../"):
            self.fail(f"{raw!r} is outside the build context")
        if self.context is None:
            self.fail("a COPY or ADD needs a build context folder")
        if not re.search(r"[*?\[]", rel):
            if self.ignore.ignored(rel):
                self.fail(f"{raw!r} is excluded by .dockerignore")
            if not os.path.lexists(os.path.join(self.context, rel)):
                self.fail(f"{raw!r} does not exist in the build context {self.context}")
            return [rel + "/" if raw.endswith("/") and rel != "." else rel]
        import glob  # (only wildcard sources need it)

        self.globbed.append(rel)

        found = sorted(
            os.path.relpath(p, self.context)
            for p in glob.glob(os.path.join(glob.escape(self.context), rel), include_hidden=True)
        )
        found = [p for p in found if not self.ignore.ignored(p)]
        if not found:
            self.fail(f"no file in the build context matches {raw!r}")
        return found


def _platform_args() -> dict[str, str]:
    os_name, arch = _host_platform().split("/", 1)
    arch, _, variant = arch.partition("/")
    out = {}
    for prefix in ("BUILD", "TARGET"):
        out[prefix + "PLATFORM"] = _host_platform()
        out[prefix + "OS"] = os_name
        out[prefix + "ARCH"] = arch
        out[prefix + "VARIANT"] = variant
    return out


def _host_platform() -> str:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "i686": "386"}.get(machine, machine)
    return f"linux/{arch}"


def read_dockerfile(
    path: str | os.PathLike[str],
    make: Callable[[dict[str, Any]], T],
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    context: str | os.PathLike[str] | None = None,
    inputs: list[str] | None = None,
    base_config: Callable[[str], Any] | None = None,
) -> T:
    """``make(values)``: the Image the Dockerfile ``path`` describes, from the
    keyword arguments of ``Image`` (see ``Image.from_dockerfile``).

    Raises:
        SpecError: with the file and line for an instruction that is wrong or
            not supported, a source missing from the context, an unreadable file.

    ``inputs``, when given, learns what else than the Dockerfile decided the
    image: the ``.dockerignore`` paths (read or found missing) and, as
    ``"glob:PATTERN"``, each wildcard source expanded against the context.
    ``base_config(name)``, when given, is the config (an ImageConfig) of the
    local image ``name``, which a stage built FROM it starts with.
    """
    where = os.fspath(path)
    folder = os.fspath(context) if context is not None else os.path.dirname(os.path.abspath(where))
    try:
        with open(where, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise SpecError(f"cannot read the Dockerfile: {err.strerror or err}", path=where) from None
    except UnicodeDecodeError as err:
        raise SpecError(f"the Dockerfile is not UTF-8 text: {err.reason}", path=where) from None
    reader = Reader(where, build_args or {}, folder, make, base_config)
    try:
        reader.ignore = read_dockerignore(folder, where)[0]
    except OSError as err:
        raise SpecError(f"cannot read .dockerignore: {err.strerror or err}", path=where) from None
    stage = reader.read(text, target)
    if inputs is not None:
        inputs.extend(ignore_files(folder, where))
        inputs.extend("glob:" + pattern for pattern in reader.globbed)
    result: T = reader.image(stage)
    return result
