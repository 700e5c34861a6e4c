"""The Layer value: one build step (run, copy, env or workdir), its cache identity and its display forms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

import pylxcore.spec.validate as validate
from pylxcore.errors import SpecError

if TYPE_CHECKING:
    from pylxcore.spec.image import Image

__all__ = ["LAYER_KINDS", "NETWORKS", "Layer"]

LAYER_KINDS = ("run", "copy", "env", "workdir")
NETWORKS = ("host", "none")


def _convert_env_pairs(value: object) -> tuple[tuple[str, str], ...]:
    # Sorted so that the same variables in another order are the same step
    # (same cache key): an ENV step sets them all at once.
    return tuple(sorted(validate.env(value).items()))


def _convert_exclude(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise SpecError(f"expected a list of patterns, got {validate.type_name(value)}", key="copy.exclude")
    return tuple(value)


def _convert_script(value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(
            f"expected a shell script string, got {value!r} ({validate.type_name(value)})", key="run"
        )
    # YAML "|" blocks end with a newline that "run: x" does not have; both are
    # the same step and must share a cache key.
    return value.rstrip("\n")


def _convert_mode(value: object) -> int | None:
    if value is None:
        return None
    # The one rule for modes: the YAML reader hands over the text as written
    # ("644", "0o644") and this reads it like chmod does.
    expected = "expected octal permission bits from 0 to 0o7777, as an int or digits like '0644'"
    mode: object = value
    if isinstance(value, str):
        digits = value[2:] if value[:2].lower() == "0o" else value
        if not re.fullmatch(r"[0-7]+", digits):
            raise SpecError(f"{expected}, got {value!r}", key="copy.mode")
        mode = int(digits, 8)
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise SpecError(f"{expected}, got {value!r} ({validate.type_name(value)})", key="copy.mode")
    if not 0 <= mode <= 0o7777:
        raise SpecError(f"{expected}, got {value!r}", key="copy.mode")
    return mode


def _shell_quote_env(value: str) -> str:
    # Dockerfile-like display: bare when safe, else a JSON string (one line,
    # newlines escaped).
    if value and re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]+", value):
        return value
    import json  # deferred: only display needs it

    return json.dumps(value, ensure_ascii=False)


@attrs.frozen(repr=False)
class Layer:
    """One build step: ``run`` a script, ``copy`` from the context, set ``env``, or set ``workdir``.

    Make layers with the constructors :meth:`run`, :meth:`copy`, :meth:`env`
    and :meth:`workdir`. Only the fields of the layer's ``kind`` may be set.
    The variables of an env layer are in :attr:`env_pairs`, a sorted tuple
    of ``(name, value)`` (the name ``env`` is taken by the constructor).

    Error keys are relative to the layer, as in the YAML form: ``run``,
    ``network``, ``copy.src``, ``copy.dest``, ``copy.mode``, ``env.NAME``,
    ``workdir``; an Image prefixes them with ``layers[i].``.

    Raises:
        SpecError: for an unknown kind, a field that does not belong to the
            kind, or a bad value.
    """

    kind: str
    script: str = attrs.field(default="", converter=_convert_script)
    network: str = "host"
    src: str = ""
    dest: str = ""
    mode: int | None = attrs.field(default=None, converter=_convert_mode)
    env_pairs: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_convert_env_pairs)
    path: str = ""
    # Dockerfile steps (spec/dockerfile.py): the user a run step runs as and
    # the owner of what a copy makes ("" = root, as the YAML form has it),
    # and the .dockerignore patterns a copy leaves out. In the cache key only
    # when set, so that YAML images keep their keys.
    user: str = ""
    owner: str = ""
    exclude: tuple[str, ...] = attrs.field(default=(), converter=_convert_exclude)
    # COPY --from: the image (a Dockerfile stage) whose files a copy takes
    # instead of the context's; src is then a path in that image.
    stage: Image | None = None
    # ADD of a local tar archive: unpack it into dest (its owners and modes kept).
    extract: bool = False
    # ADD of a URL: the file src is fetched from here by each build (not the context's).
    url: str = ""
    # Where the step was written ("Dockerfile:7 RUN make"), shown instead of
    # the generated form; not part of what the step is.
    source: str = attrs.field(default="", eq=False)

    def __attrs_post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise SpecError(
                f"unknown layer kind {self.kind!r}; expected one of {', '.join(LAYER_KINDS)}", key="kind"
            )
        # A field of another kind would silently do nothing; it must not
        # even exist, so canonical() never has to decide whether it counts.
        used = {
            "run": ("script", "network", "user", "source"),
            "copy": ("src", "dest", "mode", "owner", "exclude", "stage", "extract", "url", "source"),
            "env": ("env_pairs", "source"),
            "workdir": ("path", "source"),
        }[self.kind]
        for f in attrs.fields(Layer):
            if f.name != "kind" and f.name not in used and getattr(self, f.name) != f.default:
                raise SpecError(f"field {f.name!r} does not apply to a {self.kind} layer", key=self.kind)
        if self.kind == "run":
            if not self.script.strip():
                raise SpecError("the script is empty", key="run")
            if "\0" in self.script:
                raise SpecError("the script contains a NUL character", key="run")
            if self.network not in NETWORKS:
                raise SpecError(
                    f"invalid network {self.network!r}; expected one of {', '.join(NETWORKS)}", key="network"
                )
            if self.user:
                validate.user(self.user, "user")
        elif self.kind == "copy":
            validate.relative_path(self.src, "copy.src")
            if self.url:
                validate.url(self.url, "copy.url")
                if "/" in self.src:
                    raise SpecError(f"a fetched file's name has no '/', got {self.src!r}", key="copy.src")
            if self.dest == "":
                raise SpecError(
                    "missing destination: copy needs an absolute dest inside the image", key="copy.dest"
                )
            validate.absolute_path(self.dest, "copy.dest", allow_dotdot=False)
            if self.owner:
                validate.user(self.owner, "copy.owner")
            for i, pattern in enumerate(self.exclude):
                if not isinstance(pattern, str) or not pattern:
                    raise SpecError(
                        f"expected a non-empty pattern, got {pattern!r}", key=f"copy.exclude[{i}]"
                    )
        elif self.kind == "env":
            if not self.env_pairs:
                raise SpecError("an env layer needs at least one variable", key="env")
        else:
            validate.workdir(self.path)

    @classmethod
    def run(cls, script: str, *, network: str = "host", user: str = "", source: str = "") -> Layer:
        """A shell script run with ``/bin/sh -e`` as root (or ``user``) in the image's workdir.

        ``network`` is ``"host"`` (like ``docker build``) or ``"none"``;
        ``user`` a name or uid (":group" or ":gid" optional) of the image;
        ``source`` what to show for the step (where it was written).

        Raises:
            SpecError: for an empty or blank script, an unknown network or a bad user.
        """
        return cls(kind="run", script=script, network=network, user=user, source=source)

    @classmethod
    def copy(
        cls,
        src: str,
        dest: str,
        *,
        mode: int | str | None = None,
        owner: str = "",
        exclude: tuple[str, ...] = (),
        stage: Image | None = None,
        extract: bool = False,
        url: str = "",
        source: str = "",
    ) -> Layer:
        """Copy ``src`` (relative to the build context) to ``dest`` (absolute in the image).

        A ``dest`` ending in ``/`` means "into this directory". ``mode`` sets
        the permission bits of the copied files (int, or octal digits "0644").
        ``owner`` (a user of the image, ":group" optional) owns what is copied
        instead of root; ``exclude`` holds ``.dockerignore`` patterns
        (spec/dockerignore.py, relative to the context) of paths left out.
        With ``stage`` (an Image, built first), ``src`` is a path in that
        image instead of the context (Docker's ``COPY --from``). With
        ``extract``, ``src`` is a tar archive (compressed or not) unpacked
        into the folder ``dest`` with its own owners and modes (Docker's ``ADD``).
        With ``url`` (http or https), the file named ``src`` is fetched from
        there by each build instead (Docker's ``ADD URL``: mode 0600 unless
        ``mode``, its time the server's Last-Modified).

        Raises:
            SpecError: for an absolute ``src`` or one with ``..``, a relative
                ``dest``, a mode outside 0..0o7777, or a bad owner or pattern.
        """
        return cls(
            kind="copy",
            src=src,
            dest=dest,
            mode=mode,
            owner=owner,
            exclude=exclude,
            stage=stage,
            extract=extract,
            url=url,
            source=source,
        )

    @classmethod
    def env(cls, values: Mapping[str, str] | None = None, /, **kwargs: str) -> Layer:
        """Set environment variables: ``Layer.env(A="1")`` or ``Layer.env({"A": "1"})``.

        Raises:
            SpecError: (key ``env.NAME``) for a bad name or a non-str value,
                or when no variable is given.
        """
        merged: dict[str, str] = dict(values or {})
        merged.update(kwargs)
        return cls(kind="env", env_pairs=merged)

    @classmethod
    def workdir(cls, path: str) -> Layer:
        """Set the working directory of later steps and of containers.

        Raises:
            SpecError: if ``path`` is not absolute.
        """
        return cls(kind="workdir", path=path)

    def instruction(self) -> str:
        """A one-line, Dockerfile-like text for display: ``RUN mkdir -p /www``, ``COPY site/ /www/``."""
        if self.source:
            return self.source.replace("\r", "\\r").replace("\n", "\\n")
        if self.kind == "run":
            flag = "--network=none " if self.network == "none" else ""
            return "RUN " + flag + self.script.replace("\r", "\\r").replace("\n", "\\n")
        if self.kind == "copy":
            flag = f"--chmod={self.mode:04o} " if self.mode is not None else ""
            return f"COPY {flag}{self.src} {self.dest}"
        if self.kind == "env":
            return "ENV " + " ".join(f"{name}={_shell_quote_env(value)}" for name, value in self.env_pairs)
        return f"WORKDIR {self.path}"

    def canonical(self) -> dict[str, object]:
        """The fields that define this step, as a JSON-serializable dict (for cache keys).

        Every field of the kind is present even at its default (a run layer
        always says its network), so the key records what the step does, not
        how it was spelled.
        """
        if self.kind == "run":
            ident: dict[str, object] = {"kind": "run", "script": self.script, "network": self.network}
            if self.user:
                ident["user"] = self.user
            return ident
        if self.kind == "copy":
            ident = {"kind": "copy", "src": self.src, "dest": self.dest, "mode": self.mode}
            if self.owner:
                ident["owner"] = self.owner
            # Not the exclude patterns: the content the builder adds to the key
            # is what they let through, so an edit that copies the same keeps the key.
            if self.stage is not None:
                # What the stage holds is in the step's key (the builder adds its chain key).
                ident["from"] = "stage"
            if self.extract:
                ident["extract"] = True
            if self.url:
                ident["url"] = self.url  # what was fetched: the builder adds its digest
            return ident
        if self.kind == "env":
            return {"kind": "env", "env": [[name, value] for name, value in self.env_pairs]}
        return {"kind": "workdir", "path": self.path}

    def to_yaml_obj(self) -> object:
        """The YAML form of this layer (a mapping with one kind key), as plain Python values.

        Raises:
            SpecError: for a Dockerfile's step that YAML cannot say (a user,
                an owner, ``.dockerignore`` patterns, ``--from``, an archive to unpack, a URL).
        """
        extra = [
            name for name in ("user", "owner", "exclude", "stage", "extract", "url") if getattr(self, name)
        ]
        if extra:
            raise SpecError(
                f"{self.instruction()!r} has no YAML form: YAML layers have no {', '.join(extra)}",
                key=self.kind,
            )
        if self.kind == "run":
            data: dict[str, object] = {"run": self.script}
            if self.network != "host":
                data["network"] = self.network
            return data
        if self.kind == "copy":
            spec: dict[str, object] = {"src": self.src, "dest": self.dest}
            if self.mode is not None:
                # A string, so a reader never has to guess between YAML 1.1
                # octal (0644) and decimal.
                spec["mode"] = f"{self.mode:04o}"
            return {"copy": spec}
        if self.kind == "env":
            return {"env": dict(self.env_pairs)}
        return {"workdir": self.path}

    def __repr__(self) -> str:
        if self.kind == "run":
            extra = f", network={self.network!r}" if self.network != "host" else ""
            return f"Layer.run({self.script!r}{extra})"
        if self.kind == "copy":
            extra = f", mode=0o{self.mode:o}" if self.mode is not None else ""
            return f"Layer.copy({self.src!r}, {self.dest!r}{extra})"
        if self.kind == "env":
            return f"Layer.env({dict(self.env_pairs)!r})"
        return f"Layer.workdir({self.path!r})"
