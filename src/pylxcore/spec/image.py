"""The Image value: what to build (a base, ordered layers) and the defaults of its containers.

Its YAML form is read and written by ``pylxcore.spec.yaml``; ``Image.load``,
``from_yaml`` and ``to_yaml`` are the doors to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

import pylxcore.spec.validate as validate
from pylxcore.errors import SpecError
from pylxcore.spec.context import resolve_copy_source
from pylxcore.spec.healthcheck import Healthcheck
from pylxcore.spec.layer import Layer
from pylxcore.spec.limits import Limits
from pylxcore.spec.names import split_image_ref, validate_image_ref

if TYPE_CHECKING:
    from pylxcore.engine import Engine

__all__ = ["Image"]

_SUITE_RE = r"[a-z0-9-]+"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst")
_DEFAULT_BASE = "busybox"


def _convert_name(value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(
            f"expected an image name like 'web:1.0', got {value!r} ({validate.type_name(value)})", key="name"
        )
    return validate_image_ref(value)


def _convert_base(value: object) -> str:
    allowed = (
        "expected 'busybox', 'scratch', 'debian:SUITE', 'dir:/abs/path',"
        " 'tar:/abs/path.tar[.gz|.tgz|.xz|.zst]'"
        ", 'image:NAME[:TAG]' or 'docker://REF'"
    )
    if not isinstance(value, str):
        raise SpecError(f"{allowed}, got {value!r} ({validate.type_name(value)})", key="base")
    kind, colon, arg = value.partition(":")
    if value in ("busybox", "scratch"):  # scratch: nothing (a Dockerfile's FROM scratch)
        return value
    if kind == "debian" and re.fullmatch(_SUITE_RE, arg):
        return value
    if kind in ("dir", "tar") and colon:
        validate.absolute_path(arg, "base", allow_dotdot=False)
        if kind == "tar" and not arg.endswith(_TAR_SUFFIXES):
            raise SpecError(
                f"invalid base {value!r}: a tar base must end with {', '.join(_TAR_SUFFIXES)}", key="base"
            )
        return value
    if kind == "image" and colon:
        try:
            return "image:" + validate_image_ref(arg)
        except SpecError as err:
            raise SpecError(f"invalid base {value!r}: {err.reason}", key="base") from None
    if value.startswith("docker://"):  # pulled from a registry (pylxcore.transfer.registry)
        ref, at, digest = value[len("docker://") :].partition("@")
        try:
            validate_image_ref(ref)
        except SpecError as err:
            raise SpecError(f"invalid base {value!r}: {err.reason}", key="base") from None
        if at and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise SpecError(f"invalid base {value!r}: a digest is sha256:<64 hex digits>", key="base")
        return value
    raise SpecError(f"invalid base {value!r}; {allowed}", key="base")


def _convert_layers(value: object) -> tuple[Layer, ...]:
    if value is None:
        return ()
    # A str or a mapping is iterable too, but never a list of layers.
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SpecError(f"expected a list of layers, got {validate.type_name(value)}", key="layers")
    layers = []
    for i, item in enumerate(value):
        if isinstance(item, Layer):
            layers.append(item)
        elif isinstance(item, str):
            try:
                layers.append(Layer.run(item))
            except SpecError as err:
                raise SpecError(err.reason, key=f"layers[{i}].{err.key}") from None
        else:
            raise SpecError(
                f"expected a Layer or a script string, got {item!r} ({validate.type_name(item)})",
                key=f"layers[{i}]",
            )
    return tuple(layers)


def _convert_env(value: object) -> dict[str, str]:
    if value is not None and not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping of variables, got {validate.type_name(value)}", key="env")
    # A copy: the caller's dict must not change a frozen Image behind its back.
    return validate.env(value)


def _convert_labels(value: object) -> dict[str, str]:
    return validate.labels(value)


def _convert_workdir(value: object) -> str:
    return validate.workdir(value)


def _convert_user(value: object) -> str:
    return validate.user(value)


def _convert_cmd(value: object) -> tuple[str, ...] | None:
    return validate.command(value)


def _convert_entrypoint(value: object) -> tuple[str, ...] | None:
    return validate.command(value, "entrypoint")


def _convert_ports(value: object) -> tuple[str, ...]:
    return validate.ports(value)


def _convert_volumes(value: object) -> tuple[str, ...]:
    return validate.paths(value, "volumes")


def _convert_stop_signal(value: object) -> str | None:
    return validate.stop_signal(value)


def _convert_healthcheck(value: object) -> Healthcheck | None:
    if value is None or isinstance(value, Healthcheck):
        return value
    if isinstance(value, Mapping):
        return Healthcheck.from_dict(value)
    if isinstance(value, (str, list, tuple)):
        return Healthcheck(value)
    raise SpecError(
        f"expected a Healthcheck, a mapping or a command, got {validate.type_name(value)}", key="healthcheck"
    )


def _convert_limits(value: object) -> Limits:
    if value is None:
        return Limits()
    if isinstance(value, Limits):
        return value
    if isinstance(value, Mapping):
        return Limits.from_dict(value)
    raise SpecError(f"expected Limits or a mapping, got {validate.type_name(value)}", key="limits")


def _convert_context(value: object) -> str | None:
    if value is None:
        return None
    folder = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if isinstance(folder, str):
        return folder
    raise SpecError(f"expected a folder path, got {value!r} ({validate.type_name(value)})", key="context")


# Image holds two dicts, which cannot be hashed. They are left out of the
# hash (hash=False) rather than making Image unhashable: equal images still
# have equal hashes, and images stay usable as dict keys and in sets. The
# dicts are private copies; treat them as read-only.
@attrs.frozen(repr=False)
class Image:
    """What to build: a base, ordered layers, and the defaults of its containers.

    ``Image("web:1.0", base="busybox", layers=[...], env={...}, workdir="/www",
    user="root", cmd=[...], labels={...}, limits=Limits(...))``. A plain
    string in ``layers`` is ``Layer.run(string)``; a string ``cmd`` (or
    ``entrypoint``) is run by ``/bin/sh -c``. As in Docker, a container runs
    ``entrypoint + cmd``, and the arguments it is given replace ``cmd``.
    ``exposed_ports`` ("80/tcp"), ``volumes`` (paths), ``stop_signal`` and
    ``healthcheck`` are the rest of Docker's image config, kept whole;
    ``onbuild`` (Docker's ``OnBuild``, from a Dockerfile's ``ONBUILD``) the
    instructions a Dockerfile built FROM this image runs first.
    ``context`` (the build context folder) is not part of the image's
    identity: it is ignored by ``==`` and by :meth:`to_yaml`. When it is
    set, every copy source is checked to exist inside it.

    Raises:
        SpecError: for any bad value, with ``key`` the path of the value
            (``name``, ``base``, ``layers[2].copy.src``, ``env.PORT``, ``cmd[1]``,
            ``limits.memory``, ...).
    """

    name: str = attrs.field(converter=_convert_name)
    base: str = attrs.field(default=_DEFAULT_BASE, converter=_convert_base)
    layers: tuple[Layer, ...] = attrs.field(default=(), converter=_convert_layers)
    env: dict[str, str] = attrs.field(factory=dict, converter=_convert_env, hash=False)
    workdir: str = attrs.field(default="/", converter=_convert_workdir)
    user: str = attrs.field(default="root", converter=_convert_user)
    cmd: tuple[str, ...] | None = attrs.field(default=None, converter=_convert_cmd)
    labels: dict[str, str] = attrs.field(factory=dict, converter=_convert_labels, hash=False)
    limits: Limits = attrs.field(factory=Limits, converter=_convert_limits)
    entrypoint: tuple[str, ...] | None = attrs.field(default=None, converter=_convert_entrypoint)
    exposed_ports: tuple[str, ...] = attrs.field(default=(), converter=_convert_ports)
    volumes: tuple[str, ...] = attrs.field(default=(), converter=_convert_volumes)
    stop_signal: str | None = attrs.field(default=None, converter=_convert_stop_signal)
    healthcheck: Healthcheck | None = attrs.field(default=None, converter=_convert_healthcheck)
    onbuild: tuple[str, ...] = attrs.field(default=(), converter=validate.onbuild)
    context: str | None = attrs.field(default=None, converter=_convert_context, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.context is not None:
            for i, layer in enumerate(self.layers):
                # (--from: a path in another image; a URL: fetched by the build)
                if layer.kind == "copy" and layer.stage is None and not layer.url:
                    resolve_copy_source(self.context, layer.src, key=f"layers[{i}].copy.src")

    @property
    def repository(self) -> str:
        """The name without the tag: ``"web"`` for ``"web:1.0"``."""
        return split_image_ref(self.name)[0]

    @property
    def tag(self) -> str:
        """The tag: ``"1.0"`` for ``"web:1.0"``."""
        return split_image_ref(self.name)[1]

    def with_context(self, context: str | os.PathLike[str] | None) -> Image:
        """This image with another build context (copy sources are checked again).

        Raises:
            SpecError: if a copy source is missing from or escapes ``context``.
        """
        return attrs.evolve(self, context=context)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Image:
        """Read an image from a YAML file; the build context is the file's folder.

        Raises:
            SpecError: with ``path``, ``line`` and ``key`` for any mistake,
                including a file that cannot be read.
        """
        where = os.fspath(path)
        try:
            with open(where, encoding="utf-8") as stream:
                text = stream.read()
        except OSError as err:
            raise SpecError(f"cannot read the image file: {err.strerror or err}", path=where) from None
        except UnicodeDecodeError as err:
            raise SpecError(f"the image file is not UTF-8 text: {err.reason}", path=where) from None
        return cls.from_yaml(text, path=where, context=os.path.dirname(os.path.abspath(where)))

    @classmethod
    def from_yaml(cls, text: str, *, path: str | None = None, context: str | None = None) -> Image:
        """Read an image from YAML text (the form of SPEC.md section 2).

        ``path`` is only used in error messages; the build context is
        ``context`` alone (:meth:`load` sets it to the file's folder).

        Raises:
            SpecError: with ``path``, ``line`` and ``key`` for any mistake: bad
                YAML, a document that is not a mapping, unknown or duplicate
                keys, wrong types, bad values. Nothing else escapes.
        """
        # Deferred: PyYAML is a sixth of ``import pylxcore``'s time, and most
        # programs that import pylxcore never read YAML.
        from pylxcore.spec.yaml import read_image

        return read_image(text, path=path, make=lambda values: cls(**values, context=context))

    @classmethod
    def from_dockerfile(
        cls,
        path: str | os.PathLike[str],
        *,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        context: str | os.PathLike[str] | None = None,
        name: str = "dockerfile:latest",
        engine: Engine | None = None,
    ) -> Image:
        """Read an image from a Dockerfile (SPEC.md section 9); the build context
        is ``context``, by default the Dockerfile's folder, and its
        ``.dockerignore`` applies. ``target`` picks the stage (default: the last).
        With ``engine``, a stage built FROM an image of its store starts
        with that image's config (env, workdir, user, cmd...) and runs its
        ONBUILD triggers first, as in Docker; without, only with its files.

        Raises:
            SpecError: with the file, the line and the instruction for any
                mistake or unsupported instruction, a copy source missing from
                the context, a file that cannot be read.
        """
        from pylxcore.spec.dockerfile import read_dockerfile  # deferred, as in from_yaml

        return read_dockerfile(
            path,
            lambda values: cls(name, **values),
            build_args=build_args,
            target=target,
            context=context,
            base_config=(lambda ref: engine.images.get(ref).config) if engine is not None else None,
        )

    def to_yaml(self) -> str:
        """The YAML form; ``Image.from_yaml(image.to_yaml()) == image``. Defaults are left out."""
        data: dict[str, object] = {"name": self.name}
        if self.base != _DEFAULT_BASE:
            data["base"] = self.base
        if self.env:
            data["env"] = dict(self.env)
        if self.workdir != "/":
            data["workdir"] = self.workdir
        if self.user != "root":
            data["user"] = self.user
        if self.labels:
            data["labels"] = dict(self.labels)
        if self.layers:
            data["layers"] = [layer.to_yaml_obj() for layer in self.layers]
        if self.entrypoint is not None:
            data["entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            data["cmd"] = list(self.cmd)
        if self.exposed_ports:
            data["exposed_ports"] = list(self.exposed_ports)
        if self.volumes:
            data["volumes"] = list(self.volumes)
        if self.stop_signal is not None:
            data["stop_signal"] = self.stop_signal
        if self.healthcheck is not None:
            data["healthcheck"] = self.healthcheck.to_dict()
        if self.limits != Limits():
            data["limits"] = self.limits.to_dict()
        if self.onbuild:
            raise SpecError("a Dockerfile's ONBUILD has no YAML form", key="onbuild")
        from pylxcore.spec.yaml import write_image  # deferred, as in from_yaml

        return write_image(data)

    def __repr__(self) -> str:
        # Only what differs from the defaults: an image repr stays readable.
        default = Image(self.name)
        fields = [repr(self.name)]
        for f in attrs.fields(Image)[1:]:
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                fields.append(f"{f.name}={value!r}")
        return f"Image({', '.join(fields)})"

    def _repr_html_(self) -> str:
        """A compact HTML table for Jupyter."""
        import html  # deferred: only Jupyter needs these
        import json

        esc = html.escape
        rows = [("name", esc(self.name)), ("base", esc(self.base))]
        if self.layers:
            items = "".join(f"<li><code>{esc(layer.instruction())}</code></li>" for layer in self.layers)
            rows.append(("layers", f"<ol start='1' style='margin:0'>{items}</ol>"))
        if self.env:
            rows.append(("env", esc(" ".join(f"{k}={v}" for k, v in self.env.items()))))
        rows.append(("workdir", esc(self.workdir)))
        if self.user != "root":
            rows.append(("user", esc(self.user)))
        if self.entrypoint is not None:
            rows.append(("entrypoint", f"<code>{esc(json.dumps(list(self.entrypoint)))}</code>"))
        if self.cmd is not None:
            rows.append(("cmd", f"<code>{esc(json.dumps(list(self.cmd)))}</code>"))
        if self.labels:
            rows.append(("labels", esc(", ".join(f"{k}={v}" for k, v in self.labels.items()))))
        if self.limits != Limits():
            rows.append(("limits", esc(", ".join(f"{k}={v}" for k, v in self.limits.to_dict().items()))))
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
            for k, v in rows
        )
        return f"<table>{body}</table>"
