"""The meaning of each Dockerfile instruction in a stage (spec/dockerfile.py reads the file)."""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import TYPE_CHECKING, Any

import pylxcore.spec.validate as validate
from pylxcore.errors import SpecError
from pylxcore.spec.layer import Layer

if TYPE_CHECKING:
    from pylxcore.spec.dockerfile import Reader, Stage

__all__ = ["apply", "declare_args", "run_triggers"]

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_HEREDOC_ONLY = re.compile(r"\s*<<-?\s*([\"']?)(\w+)\1\s*")
SUPPORTED = (
    "FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL, VOLUME, STOPSIGNAL,"
    " HEALTHCHECK, SHELL, ONBUILD"
)
# What ONBUILD may not hold, at definition and when its trigger runs (Docker's rule).
_NOT_TRIGGERS = ("ONBUILD", "FROM", "MAINTAINER")


def declare_args(
    reader: Reader, values: Any, into: dict[str, str | None], globals_: dict[str, str | None]
) -> None:
    """``ARG NAME[=default] ...``: each name's value is the build arg, else the
    default (its variables substituted), else the global ARG of that name."""
    for item in values:
        name, eq, default = item.partition("=")
        try:
            validate.env_name(name, "ARG")
        except SpecError as err:
            reader.fail(err.reason)
        env = {k: v for k, v in into.items() if v is not None}
        if name in reader.build_args:
            value: str | None = reader.build_args[name]
        elif eq:
            value = reader.word(default, env)
        else:
            value = globals_.get(name)
        into[name] = value


def _source(reader: Reader, cmd: Any) -> str:
    # Docker's parser joined continued lines; a heredoc's body is not shown.
    first = cmd.original.split("\n", 1)[0].strip() if cmd.heredocs else cmd.original.strip()
    return f"{reader.path.rsplit('/', 1)[-1]}:{cmd.start_line} {first}"


def _json_or_shell(stage: Stage, cmd: Any) -> tuple[str, ...]:
    """A CMD/ENTRYPOINT argv: the JSON form as written, the shell form run by SHELL."""
    if cmd.json:
        return tuple(cmd.value)
    return (*stage.shell, " ".join(cmd.value))


def _run(reader: Reader, stage: Stage, cmd: Any) -> None:
    flags = reader.flags(("network",))
    network = flags.get("network", "default")
    if network not in ("default", "host", "none"):
        reader.fail(f"--network={network} is not supported (default, host or none)")
    if cmd.json:
        argv = list(cmd.value)
    else:
        line = " ".join(cmd.value)
        heredocs = list(cmd.heredocs)
        only = _HEREDOC_ONLY.fullmatch(line)
        if heredocs and only and len(heredocs) == 1:
            # "RUN <<EOF": the heredoc is the script (buildkit's rule).
            line = heredocs[0].content
            if line.startswith("#!"):
                reader.fail("a heredoc script with '#!' is not supported; run its interpreter on it instead")
        elif heredocs:
            # "RUN cat <<EOF >f": the shell reads the heredocs itself.
            line += "\n" + "".join(h.content + h.name + "\n" for h in heredocs)
        argv = [*stage.shell, line]
    if not argv or not argv[0]:
        reader.fail("RUN needs a command")
    # Build args are the command's environment too, below the ENV variables;
    # exec: the command itself is the step, as in Docker (no "sh -e" around it).
    exports = [
        f"export {name}={shlex.quote(value)}"
        for name, value in sorted(stage.args.items())
        if value is not None and name not in stage.env
    ]
    script = "\n".join([*exports, "exec " + shlex.join(argv)])
    try:
        layer = Layer.run(
            script,
            network="none" if network == "none" else "host",
            user="" if stage.user in ("", "root", "0") else stage.user,
            source=_source(reader, cmd),
        )
    except SpecError as err:
        reader.fail(err.reason)
    stage.layers.append(layer)


def _copy(reader: Reader, stage: Stage, cmd: Any) -> None:
    add = cmd.cmd == "ADD"
    flags = reader.flags(("chown", "chmod", "link") if add else ("chown", "chmod", "from", "link"))
    if cmd.heredocs:
        reader.fail(f"{cmd.cmd} of a heredoc is not supported; write the file in a RUN step")
    env = stage.words_env()
    args = [a if cmd.json else reader.word(a, env) for a in cmd.value]
    if len(args) < 2:
        reader.fail(f"{cmd.cmd} needs a source and a destination")
    *raw_sources, dest = args
    source_image = reader.copy_from(reader.word(flags["from"], env), stage) if "from" in flags else None
    owner = reader.word(flags["chown"], env) if "chown" in flags else ""
    mode = flags.get("chmod")
    if mode is not None and not re.fullmatch(r"[0-7]{1,4}", mode):
        reader.fail(f"--chmod={mode}: expected octal permission bits like 755")
    # (path in the context or the other image, URL or "")
    sources: list[tuple[str, str]] = []
    for raw in raw_sources:
        if _URL.match(raw) or raw.startswith("git@"):
            sources.append((_url_name(reader, add and source_image is None, raw, dest), raw))
        elif source_image is None:
            sources.extend((src, "") for src in reader.copy_source(raw))
        else:
            sources.append((_image_path(reader, raw), ""))
    if len(sources) > 1 and not dest.endswith("/"):
        reader.fail(f"with more than one source the destination must be a folder ending in '/', got {dest!r}")
    if not dest.startswith("/"):
        slash = dest in (".", "./") or dest.endswith("/")
        dest = posixpath.normpath(posixpath.join(stage.workdir, dest))
        dest = dest.rstrip("/") + "/" if slash else dest
    for src, url in sources:
        extract = add and not url and reader.is_archive(src)
        try:
            layer = Layer.copy(
                src,
                dest,
                mode=mode,
                owner=owner,
                exclude=reader.ignore.patterns if source_image is None and not url else (),
                stage=source_image,
                extract=extract,
                url=url,
                source=_source(reader, cmd),
            )
        except SpecError as err:
            reader.fail(f"{err.key}: {err.reason}" if err.key else err.reason)
        stage.layers.append(layer)


def _url_name(reader: Reader, allowed: bool, raw: str, dest: str) -> str:
    """The name of the file ``ADD URL DEST`` fetches: the URL path's last
    part, else (DEST naming a file) DEST's; Docker's rule."""
    if not allowed:
        reader.fail(f"{raw!r}: only ADD fetches URLs (COPY copies from the build context)")
    if not re.match(r"https?://", raw):
        reader.fail(f"{raw!r}: only http:// and https:// URLs can be added (git sources are not supported)")
    from urllib.parse import unquote, urlsplit  # (only ADD URL needs it)

    try:
        validate.url(raw, "ADD")
        path = urlsplit(raw).path
    except (SpecError, ValueError) as err:
        reader.fail(err.reason if isinstance(err, SpecError) else f"{raw!r}: {err}")
    name = unquote(posixpath.basename(path)) or ("" if dest.endswith("/") else posixpath.basename(dest))
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        reader.fail(f"cannot tell the file name from the URL {raw!r}; name the file in the destination")
    return name


def _image_path(reader: Reader, raw: str) -> str:
    """A ``COPY --from`` source: a path in the other image, relative to its root."""
    if re.search(r"[*?\[]", raw):
        reader.fail(f"{raw!r}: wildcards in COPY --from sources are not supported")
    rel = posixpath.normpath("/" + raw).lstrip("/")
    return rel or "."


def _pairs(reader: Reader, stage: Stage, cmd: Any) -> list[tuple[str, str]]:
    values = list(cmd.value)
    env = stage.words_env()
    if len(values) % 2:
        reader.fail(f"{cmd.cmd} needs NAME=VALUE pairs")
    return [(reader.word(values[i], env), reader.word(values[i + 1], env)) for i in range(0, len(values), 2)]


def _healthcheck(reader: Reader, stage: Stage, cmd: Any) -> None:
    from pylxcore.spec.healthcheck import Healthcheck

    flags = reader.flags(("interval", "timeout", "start-period", "retries"))
    values = list(cmd.value)
    kind = values[0].upper() if values else ""
    if kind == "NONE":
        if flags or len(values) > 1:
            reader.fail("HEALTHCHECK NONE takes no flags or arguments")
        stage.healthcheck = Healthcheck(("NONE",))
        return
    if kind != "CMD" or len(values) < 2:
        reader.fail("expected HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE")
    test = ("CMD", *values[1:]) if cmd.json else ("CMD-SHELL", " ".join(values[1:]))
    try:
        retries = int(flags["retries"]) if "retries" in flags else None
    except ValueError:
        reader.fail(f"--retries={flags['retries']}: expected a whole number")
    try:
        stage.healthcheck = Healthcheck(
            test,
            interval=flags.get("interval"),
            timeout=flags.get("timeout"),
            start_period=flags.get("start-period"),
            retries=retries,
        )
    except SpecError as err:
        reader.fail(err.reason)


def apply(reader: Reader, stage: Stage, cmd: Any) -> None:
    """Give ``cmd`` (an instruction of ``stage``) its meaning in ``stage``.

    Raises:
        SpecError: with the file, line and instruction, for a wrong or unsupported instruction.
    """
    name = cmd.cmd
    if name in ("RUN", "COPY", "ADD", "HEALTHCHECK"):
        {"RUN": _run, "COPY": _copy, "ADD": _copy, "HEALTHCHECK": _healthcheck}[name](reader, stage, cmd)
        return
    reader.flags(())
    env = stage.words_env()
    try:
        if name == "ENV":
            pairs = _pairs(reader, stage, cmd)
            for key, _ in pairs:
                validate.env_name(key, "ENV")
            stage.env.update(pairs)
            stage.layers.append(Layer(kind="env", env_pairs=dict(pairs), source=_source(reader, cmd)))
        elif name == "ARG":
            declare_args(reader, cmd.value, stage.args, reader.meta)
        elif name == "WORKDIR":
            path = reader.word(" ".join(cmd.value), env)
            path = posixpath.normpath(posixpath.join(stage.workdir, path))
            stage.workdir = "/" + path.lstrip("/")
            stage.layers.append(Layer(kind="workdir", path=stage.workdir, source=_source(reader, cmd)))
        elif name == "USER":
            stage.user = validate.user(reader.word(" ".join(cmd.value), env), "USER")
        elif name == "LABEL":
            stage.labels.update(validate.labels(dict(_pairs(reader, stage, cmd)), "LABEL"))
        elif name == "CMD":
            stage.cmd = _json_or_shell(stage, cmd)
            stage.cmd_set = True
        elif name == "ENTRYPOINT":
            stage.entrypoint = _json_or_shell(stage, cmd)
            if not stage.cmd_set:
                stage.cmd = None  # an inherited CMD does not outlive a new ENTRYPOINT
        elif name == "SHELL":
            if not cmd.json or not cmd.value:
                reader.fail('SHELL needs the JSON form, like SHELL ["/bin/sh", "-c"]')
            stage.shell = tuple(cmd.value)
        elif name == "EXPOSE":
            for raw in cmd.value:
                port = reader.word(raw, env).lower()
                stage.ports.append(validate.ports([port], "EXPOSE")[0])
        elif name == "VOLUME":
            paths = cmd.value if cmd.json else [reader.word(v, env) for v in cmd.value]
            stage.volumes.extend(validate.paths(paths, "VOLUME"))
        elif name == "STOPSIGNAL":
            stage.stop_signal = validate.stop_signal(reader.word(" ".join(cmd.value), env), "STOPSIGNAL")
        elif name == "ONBUILD":
            _onbuild(reader, stage, cmd)
        else:
            reader.fail(f"{name} is not supported (supported: {SUPPORTED})")
    except SpecError as err:
        if err.path is not None:
            raise
        reader.fail(err.reason)


def _not_trigger(reader: Reader, trigger: str) -> None:
    if trigger == "ONBUILD":
        reader.fail("chaining ONBUILD via 'ONBUILD ONBUILD' is not allowed")
    if trigger in _NOT_TRIGGERS:
        reader.fail(f"{trigger} is not allowed as an ONBUILD trigger")


def _onbuild(reader: Reader, stage: Stage, cmd: Any) -> None:
    """``ONBUILD INSTRUCTION``: kept as written (Docker's ``OnBuild``) for the builds FROM this image."""
    trigger = (cmd.sub_cmd or "").upper()
    if not trigger:
        reader.fail("ONBUILD needs an instruction, like ONBUILD RUN make")
    _not_trigger(reader, trigger)
    if trigger not in SUPPORTED.split(", "):
        reader.fail(f"ONBUILD {trigger}: {trigger} is not supported (supported: {SUPPORTED})")
    # (Docker's parser reads the heredoc's lines but keeps them in no field of ONBUILD's.)
    if cmd.heredocs or re.search(r"(?<!<)<<(?!<)-?\s*[\"']?\w+", cmd.original):
        reader.fail("ONBUILD of an instruction with a heredoc is not supported")
    # Docker keeps the instruction's text (continued lines joined) without "ONBUILD ".
    stage.onbuild.append(re.sub(r"(?i)^\s*ONBUILD\s*", "", cmd.original))


def run_triggers(reader: Reader, stage: Stage) -> None:
    """Run the ONBUILD triggers of ``stage``'s base first, as Docker does right
    after FROM; a failing one is reported at the FROM line.

    Raises:
        SpecError: for a trigger that cannot be parsed or is wrong in this build.
    """
    if not stage.triggers:
        return
    import dockerfile  # (deferred: only Dockerfile builds load Go's parser)

    for expression in stage.triggers:
        try:
            parsed = dockerfile.parse_string(expression)
            for command in parsed:
                # Shown as "Dockerfile:1 [ONBUILD] RUN make": the FROM's line, the base's instruction.
                cmd = command._replace(
                    cmd=command.cmd.upper(),
                    start_line=stage.line,
                    end_line=stage.line,
                    original="[ONBUILD] " + command.original,
                )
                reader.cmd = cmd
                _not_trigger(reader, cmd.cmd)
                apply(reader, stage, cmd)
        except dockerfile.GoParseError as err:
            reader.fail(
                f"the base image's ONBUILD trigger {expression!r} does not parse: {err}", stage.from_cmd
            )
        except SpecError as err:
            reader.fail(f"the base image's ONBUILD trigger {expression!r}: {err.reason}", stage.from_cmd)
    stage.triggers = []
