"""Image specs: the frozen values of SPEC.md section 2 and their YAML form.

This module owns *what an image is*, never *how it is built*: ``Image``,
``Layer``, ``Limits``, ``Mount``, the name rules, and loading/dumping YAML.
It imports only the standard library, attrs and PyYAML, so a spec can be
checked on a machine without LXC.

Every mistake raises :class:`~pylxcore.errors.SpecError` whose ``key`` is the
path of the bad value (``layers[2].copy.src``, ``limits.memory``) and, for
YAML, whose ``path`` and ``line`` point at the offending node.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import attrs

from pylxcore.errors import SpecError
from pylxcore.spec import validate


class _LazyYaml:
    """PyYAML, imported on first use: it is a sixth of ``import pylxcore``'s
    time, and most programs that import pylxcore never read YAML."""

    def __getattr__(self, name: str) -> Any:
        import yaml as module

        globals()["yaml"] = module
        return getattr(module, name)


yaml: Any = _LazyYaml()

__all__ = [
    "Image",
    "Layer",
    "Limits",
    "Mount",
    "parse_size",
    "resolve_copy_source",
    "split_image_ref",
    "validate_container_name",
    "validate_image_ref",
]

# Sizes end up in cgroup files that hold a signed 64-bit number.
_MAX_INT64 = 2**63 - 1


_type_name = validate.type_name


# --------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------

# Patterns are kept as strings for re.fullmatch, whose cache compiles each on
# first use: compiling them all when the module loads cost ~3 ms of every import.
# Digit counts are bounded: int() refuses strings over 4300 digits with a
# bare ValueError, and no real size needs more than 30.
_SIZE_RE = r"(?P<num>[0-9]{1,30}(?:\.[0-9]{1,30})?)(?P<unit>[kmgtp](?:i?b)?|b)?"
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value: str | int, *, key: str = "size") -> int:
    """Return a size in bytes from ``"64M"``, ``"1G"``, ``"512k"``, ``"100"`` or an int.

    Units are binary whatever their spelling (``k`` = ``K`` = ``KiB`` = ``KB`` =
    1024), as in ``docker run --memory``. A decimal is fine when it comes to a
    whole number of bytes (``"1.5G"``).

    Raises:
        SpecError: (with ``key``) for zero, negative, non-whole, too large
            (over 2**63-1) or unparsable values, and for other types
            (``True``, floats, None).
    """
    expected = "a positive size in bytes, optionally with a unit k, M, G, T (1k = 1024), e.g. '64M'"
    # bool is an int subclass; True meaning "1 byte" is never what was meant.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(f"expected {expected}, got {value!r} ({_type_name(value)})", key=key)
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(_SIZE_RE, value, re.IGNORECASE)
        if match is None:
            raise SpecError(f"invalid size {value!r}: expected {expected}", key=key)
        # Fraction, not float: "1.1G" must not become 1181116006.4 by rounding noise.
        from fractions import Fraction  # noqa: PLC0415  (only for sizes with a fraction)

        exact = Fraction(match["num"]) * _SIZE_UNITS[match["unit"][:1].lower() if match["unit"] else ""]
        if exact.denominator != 1:
            raise SpecError(f"invalid size {value!r}: not a whole number of bytes", key=key)
        size = int(exact)
    if size <= 0:
        raise SpecError(f"invalid size {value!r}: expected {expected}", key=key)
    if size > _MAX_INT64:
        raise SpecError(f"invalid size {value!r}: larger than 2**63-1 bytes", key=key)
    return size


def _format_size(size: int) -> str | int:
    """The most compact exact spelling of ``size`` ("64M"), or the int itself."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return size


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

_NAME_COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
_IMAGE_NAME_RE = rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
_TAG_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_CONTAINER_NAME_RE = r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}"
_MAX_REF = 128


def split_image_ref(ref: str) -> tuple[str, str]:
    """Split ``"name[:tag]"`` into the normalized ``(name, tag)``; tag defaults to ``"latest"``.

    Raises:
        TypeError: if ``ref`` is not a str.
        SpecError: (key ``"name"``) as :func:`validate_image_ref`.
    """
    if not isinstance(ref, str):
        raise TypeError(f"image reference must be a str, not {_type_name(ref)}")
    allowed = (
        "expected name[:tag]: a name of lowercase letters and digits joined by single '.', '_' or '-',"
        " in '/'-separated components, and a tag of letters, digits, '_', '.', '-'"
        f" (not starting with '.' or '-'); at most {_MAX_REF} characters with the tag"
    )
    if ref.count(":") > 1:
        raise SpecError(f"invalid image reference {ref!r}: more than one ':'; {allowed}", key="name")
    name, colon, tag = ref.partition(":")
    if colon and not tag:
        raise SpecError(f"invalid image reference {ref!r}: empty tag after ':'; {allowed}", key="name")
    tag = tag or "latest"
    if not re.fullmatch(_IMAGE_NAME_RE, name):
        raise SpecError(f"invalid image reference {ref!r}: bad name {name!r}; {allowed}", key="name")
    # ".." inside a tag is legal for Docker, but names and tags become file
    # names in the store: refusing it outright keeps any ".." out of paths.
    if not re.fullmatch(_TAG_RE, tag) or ".." in tag:
        raise SpecError(f"invalid image reference {ref!r}: bad tag {tag!r}; {allowed}", key="name")
    if len(name) + 1 + len(tag) > _MAX_REF:
        raise SpecError(
            f"invalid image reference {ref[:40]!r}...: longer than {_MAX_REF} characters", key="name"
        )
    return name, tag


def validate_image_ref(ref: str) -> str:
    """Return the normalized ``"name:tag"`` of a Docker-like image reference.

    ``"web"`` becomes ``"web:latest"``. Names are lowercase components
    ``[a-z0-9]+([._-][a-z0-9]+)*`` separated by ``/``; tags are
    ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`` without ``..``; the result is at
    most 128 characters.

    Raises:
        TypeError: if ``ref`` is not a str.
        SpecError: (key ``"name"``) naming the bad value and what is allowed.
    """
    name, tag = split_image_ref(ref)
    return f"{name}:{tag}"


def validate_container_name(name: str) -> str:
    """Return ``name`` if it is a valid container name (Docker's rule), else raise.

    The rule is ``[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}`` (at most 63 characters, so
    it fits a host name), and, stricter than Docker, no ``..`` anywhere:
    container names become directory names.

    Raises:
        TypeError: if ``name`` is not a str.
        SpecError: (key ``"name"``) naming the bad value and what is allowed.
    """
    if not isinstance(name, str):
        raise TypeError(f"container name must be a str, not {_type_name(name)}")
    if not re.fullmatch(_CONTAINER_NAME_RE, name) or ".." in name:
        raise SpecError(
            f"invalid container name {name!r}: expected 1 to 63 characters of letters, digits, '_', '.', '-',"
            " starting with a letter or digit, without '..'",
            key="name",
        )
    return name


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def resolve_copy_source(context: str | os.PathLike[str], src: str, *, key: str = "copy.src") -> pathlib.Path:
    """Return the real path of ``src`` inside the build ``context``.

    ``src`` must be relative, contain no ``..`` component, and, after every
    symlink is resolved, still lie inside the real path of ``context`` and
    exist. A trailing ``/`` ("site/") is allowed and then ``src`` must be a
    directory. This checks only ``src`` itself: symlinks *inside* a copied
    directory are the copier's business (it must copy them as links).

    Raises:
        SpecError: (with ``key``) naming ``src`` when it is absolute, uses
            ``..``, escapes the context through a symlink, or does not exist;
            (with key ``"context"``) when ``context`` is not a directory.
    """
    validate.relative_path(src, key)
    root = os.path.realpath(os.fspath(context))
    if not os.path.isdir(root):
        raise SpecError(f"build context {os.fspath(context)!r} is not a directory", key="context")
    real = os.path.realpath(os.path.join(root, src))
    if os.path.commonpath([root, real]) != root:
        raise SpecError(f"{src!r} resolves to {real!r}, outside the build context {root!r}", key=key)
    if not os.path.exists(real):
        raise SpecError(f"{src!r} does not exist in the build context {root!r}", key=key)
    if src.endswith("/") and not os.path.isdir(real):
        raise SpecError(f"{src!r} ends with '/' but is not a directory", key=key)
    return pathlib.Path(real)


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------

_CPUSET_RE = r"[0-9]{1,6}(?:-[0-9]{1,6})?(?:,[0-9]{1,6}(?:-[0-9]{1,6})?)*"


def _int_value(value: object, key: str, low: int, high: int) -> int:
    """An int in [low, high]; digit strings are fine (CLI and env input)."""
    expected = f"expected an integer from {low} to {high}"
    number: object = value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,30}", value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise SpecError(f"{expected}, got {value!r} ({_type_name(value)})", key=key)
    if not low <= number <= high:
        raise SpecError(f"{expected}, got {value!r}", key=key)
    return number


def _convert_memory(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, str)):
        return parse_size(value, key="limits.memory")
    raise SpecError(
        f"expected a size like '64M' or bytes as an int, got {value!r} ({_type_name(value)})",
        key="limits.memory",
    )


def _convert_memory_swap(value: object) -> int | None:
    if value is None:
        return None
    # -1 means "unlimited swap", as with docker --memory-swap -1.
    if value in (-1, "-1") and not isinstance(value, bool):
        return -1
    if isinstance(value, (int, str)):
        return parse_size(value, key="limits.memory_swap")
    raise SpecError(
        f"expected a size like '128M', bytes as an int, or -1, got {value!r} ({_type_name(value)})",
        key="limits.memory_swap",
    )


def _convert_cpus(value: object) -> float | None:
    if value is None:
        return None
    expected = "expected a number of CPUs > 0 and <= 1024 (e.g. 0.5)"
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise SpecError(f"{expected}, got {value!r}", key="limits.cpus") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise SpecError(f"{expected}, got {value!r} ({_type_name(value)})", key="limits.cpus")
    cpus = float(number)
    if not math.isfinite(cpus) or not 0 < cpus <= 1024:
        raise SpecError(f"{expected}, got {value!r}", key="limits.cpus")
    return cpus


def _convert_cpu_shares(value: object) -> int | None:
    return None if value is None else _int_value(value, "limits.cpu_shares", 2, 262144)


def _convert_pids(value: object) -> int | None:
    return None if value is None else _int_value(value, "limits.pids", 1, _MAX_INT64)


def _convert_cpuset(value: object) -> str | None:
    if value is None:
        return None
    # YAML reads "cpuset: 0" as an int; a single CPU number is a valid set.
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value
    expected = "expected CPU numbers and ranges like '0-1' or '0,2'"
    if not isinstance(text, str) or not re.fullmatch(_CPUSET_RE, text):
        raise SpecError(f"{expected}, got {value!r}", key="limits.cpuset")
    for part in text.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise SpecError(f"{expected}, got {value!r}: range {part!r} runs backwards", key="limits.cpuset")
    return text


@attrs.frozen(repr=False)
class Limits:
    """Resource limits for a container; every field is optional (None = not limited).

    ``memory`` and ``memory_swap`` accept size strings (``"64M"``) and hold
    bytes; ``memory_swap`` is memory plus swap (as ``docker --memory-swap``),
    -1 for unlimited swap. ``cpus`` is a fraction of CPUs, ``cpu_shares`` a
    relative weight, ``cpuset`` which CPUs (syntax only is checked here),
    ``pids`` the most processes. Whether the host can enforce a limit is
    decided when a container starts (LimitError), not here.

    Raises:
        SpecError: (key ``limits.<field>``) for a bad value or type, naming
            the field, what is expected and what was given.
    """

    memory: int | None = attrs.field(default=None, converter=_convert_memory)
    memory_swap: int | None = attrs.field(default=None, converter=_convert_memory_swap)
    cpus: float | None = attrs.field(default=None, converter=_convert_cpus)
    cpu_shares: int | None = attrs.field(default=None, converter=_convert_cpu_shares)
    cpuset: str | None = attrs.field(default=None, converter=_convert_cpuset)
    pids: int | None = attrs.field(default=None, converter=_convert_pids)

    def __attrs_post_init__(self) -> None:
        # Same rule as Docker: memory_swap counts memory too, so less is a mistake.
        if (
            self.memory is not None
            and self.memory_swap is not None
            and self.memory_swap != -1
            and self.memory_swap < self.memory
        ):
            raise SpecError(
                f"memory_swap ({self.memory_swap}) is memory plus swap and must be >= memory ({self.memory})",
                key="limits.memory_swap",
            )

    def merged(self, override: Limits) -> Limits:
        """Return these limits with every field that ``override`` sets replaced.

        Raises:
            SpecError: if the combination is invalid (memory_swap < memory).
        """
        changes = {
            f.name: getattr(override, f.name)
            for f in attrs.fields(Limits)
            if getattr(override, f.name) is not None
        }
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """The set fields only, sizes spelled compactly ("64M") when exact; the YAML form."""
        data: dict[str, object] = {}
        for f in attrs.fields(Limits):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("memory", "memory_swap") and value != -1:
                value = _format_size(value)
            data[f.name] = value
        return data

    def __repr__(self) -> str:
        # Only the set fields, sizes as "64M": short, and still evaluates to an equal value.
        return "Limits(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, key: str = "limits") -> Limits:
        """Build Limits from a mapping like ``{"memory": "64M", "cpus": 0.5}``.

        Raises:
            SpecError: (key ``<key>`` or ``<key>.<field>``) for a non-mapping,
                an unknown field (the message lists the allowed ones) or a bad value.
        """
        if not isinstance(data, Mapping):
            raise SpecError(f"expected a mapping of limits, got {_type_name(data)}", key=key)
        allowed = [f.name for f in attrs.fields(Limits)]
        for name in data:
            if name not in allowed:
                raise SpecError(f"unknown limit {name!r}; allowed: {', '.join(allowed)}", key=f"{key}.{name}")
        try:
            return cls(**data)  # keys were checked above
        except SpecError as err:
            # The converters name "limits.<field>"; re-root under the caller's key.
            raise SpecError(err.reason, key=key + err.key[len("limits") :]) from None


# --------------------------------------------------------------------------
# Mounts
# --------------------------------------------------------------------------


# Validators take Any: they exist to catch values of the wrong type.
def _check_mount_source(_inst: object, _attr: object, value: Any) -> None:
    validate.absolute_path(value, "mount.source")


def _check_mount_target(_inst: object, _attr: object, value: Any) -> None:
    # ".." in a target would be resolved by the kernel relative to the
    # container's root and could land on a path nobody meant.
    validate.absolute_path(value, "mount.target", allow_dotdot=False)


def _check_bool(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(
            f"expected True or False, got {value!r} ({_type_name(value)})", key=f"mount.{attr.name}"
        )


@attrs.frozen
class Mount:
    """A host path bind-mounted into a container: ``Mount("/srv/data", "/data", read_only=True)``.

    Whether ``source`` exists is checked when the container starts, not here.

    Raises:
        SpecError: (key ``mount.source``/``mount.target``/``mount.read_only``)
            when a path is not absolute, the target contains ``..``, or a type is wrong.
    """

    source: str = attrs.field(validator=_check_mount_source)
    target: str = attrs.field(validator=_check_mount_target)
    read_only: bool = attrs.field(default=False, validator=_check_bool)

    @classmethod
    def parse(cls, text: str) -> Mount:
        """Parse the ``docker run -v`` form ``SOURCE:TARGET[:ro|rw]``.

        Raises:
            SpecError: (key ``mount``) for a malformed string, or as the constructor.
        """
        parts = text.split(":") if isinstance(text, str) else []
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return cls(parts[0], parts[1], read_only=parts[2] == "ro")
        raise SpecError(f"expected SOURCE:TARGET[:ro|rw] with absolute paths, got {text!r}", key="mount")


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------

LAYER_KINDS = ("run", "copy", "env", "workdir")
_NETWORKS = ("host", "none")


def _convert_env_pairs(value: object) -> tuple[tuple[str, str], ...]:
    # Sorted so that the same variables in another order are the same step
    # (same cache key): an ENV step sets them all at once.
    return tuple(sorted(validate.env(value).items()))


def _convert_script(value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(f"expected a shell script string, got {value!r} ({_type_name(value)})", key="run")
    # YAML "|" blocks end with a newline that "run: x" does not have; both are
    # the same step and must share a cache key.
    return value.rstrip("\n")


def _convert_mode(value: object) -> int | None:
    if value is None:
        return None
    expected = "expected permission bits from 0 to 0o7777, as an int or octal digits like '0644'"
    mode: object = value
    if isinstance(value, str):
        digits = value[2:] if value[:2].lower() == "0o" else value
        if not re.fullmatch(r"[0-7]+", digits):
            raise SpecError(f"{expected}, got {value!r}", key="copy.mode")
        mode = int(digits, 8)
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise SpecError(f"{expected}, got {value!r} ({_type_name(value)})", key="copy.mode")
    if not 0 <= mode <= 0o7777:
        raise SpecError(f"{expected}, got {value!r}", key="copy.mode")
    return mode


def _shell_quote_env(value: str) -> str:
    # Dockerfile-like display: bare when safe, else a JSON string (one line,
    # newlines escaped).
    if value and re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]+", value):
        return value
    import json  # noqa: PLC0415  (deferred: only display needs it)

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

    def __attrs_post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise SpecError(
                f"unknown layer kind {self.kind!r}; expected one of {', '.join(LAYER_KINDS)}", key="kind"
            )
        # A field of another kind would silently do nothing; it must not
        # even exist, so canonical() never has to decide whether it counts.
        used = {
            "run": ("script", "network"),
            "copy": ("src", "dest", "mode"),
            "env": ("env_pairs",),
            "workdir": ("path",),
        }[self.kind]
        for f in attrs.fields(Layer):
            if f.name != "kind" and f.name not in used and getattr(self, f.name) != f.default:
                raise SpecError(f"field {f.name!r} does not apply to a {self.kind} layer", key=self.kind)
        if self.kind == "run":
            if not self.script.strip():
                raise SpecError("the script is empty", key="run")
            if "\0" in self.script:
                raise SpecError("the script contains a NUL character", key="run")
            if self.network not in _NETWORKS:
                raise SpecError(
                    f"invalid network {self.network!r}; expected one of {', '.join(_NETWORKS)}", key="network"
                )
        elif self.kind == "copy":
            validate.relative_path(self.src, "copy.src")
            if self.dest == "":
                raise SpecError(
                    "missing destination: copy needs an absolute dest inside the image", key="copy.dest"
                )
            validate.absolute_path(self.dest, "copy.dest", allow_dotdot=False)
        elif self.kind == "env":
            if not self.env_pairs:
                raise SpecError("an env layer needs at least one variable", key="env")
        else:
            validate.workdir(self.path)

    @classmethod
    def run(cls, script: str, *, network: str = "host") -> Layer:
        """A shell script run with ``/bin/sh -e`` as root in the image's workdir.

        ``network`` is ``"host"`` (like ``docker build``) or ``"none"``.

        Raises:
            SpecError: for an empty or blank script or an unknown network.
        """
        return cls(kind="run", script=script, network=network)

    @classmethod
    def copy(cls, src: str, dest: str, *, mode: int | str | None = None) -> Layer:
        """Copy ``src`` (relative to the build context) to ``dest`` (absolute in the image).

        A ``dest`` ending in ``/`` means "into this directory". ``mode`` sets
        the permission bits of the copied files (int, or octal digits "0644").

        Raises:
            SpecError: for an absolute ``src`` or one with ``..``, a relative
                ``dest``, or a mode outside 0..0o7777.
        """
        return cls(kind="copy", src=src, dest=dest, mode=mode)

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
            return {"kind": "run", "script": self.script, "network": self.network}
        if self.kind == "copy":
            return {"kind": "copy", "src": self.src, "dest": self.dest, "mode": self.mode}
        if self.kind == "env":
            return {"kind": "env", "env": [[name, value] for name, value in self.env_pairs]}
        return {"kind": "workdir", "path": self.path}

    def to_yaml_obj(self) -> object:
        """The YAML form of this layer (a mapping with one kind key), as plain Python values."""
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


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------

_SUITE_RE = r"[a-z0-9-]+"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst")
_DEFAULT_BASE = "busybox"


def _convert_name(value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(
            f"expected an image name like 'web:1.0', got {value!r} ({_type_name(value)})", key="name"
        )
    return validate_image_ref(value)


def _convert_base(value: object) -> str:
    allowed = (
        "expected 'busybox', 'debian:SUITE', 'dir:/abs/path', 'tar:/abs/path.tar[.gz|.tgz|.xz|.zst]'"
        " or 'image:NAME[:TAG]'"
    )
    if not isinstance(value, str):
        raise SpecError(f"{allowed}, got {value!r} ({_type_name(value)})", key="base")
    kind, colon, arg = value.partition(":")
    if value == "busybox":
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
    raise SpecError(f"invalid base {value!r}; {allowed}", key="base")


def _convert_layers(value: object) -> tuple[Layer, ...]:
    if value is None:
        return ()
    # A str or a mapping is iterable too, but never a list of layers.
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SpecError(f"expected a list of layers, got {_type_name(value)}", key="layers")
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
                f"expected a Layer or a script string, got {item!r} ({_type_name(item)})", key=f"layers[{i}]"
            )
    return tuple(layers)


def _convert_env(value: object) -> dict[str, str]:
    if value is not None and not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping of variables, got {_type_name(value)}", key="env")
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


def _convert_limits(value: object) -> Limits:
    if value is None:
        return Limits()
    if isinstance(value, Limits):
        return value
    if isinstance(value, Mapping):
        return Limits.from_dict(value)
    raise SpecError(f"expected Limits or a mapping, got {_type_name(value)}", key="limits")


def _convert_context(value: object) -> str | None:
    if value is None:
        return None
    folder = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if isinstance(folder, str):
        return folder
    raise SpecError(f"expected a folder path, got {value!r} ({_type_name(value)})", key="context")


# Image holds two dicts, which cannot be hashed. They are left out of the
# hash (hash=False) rather than making Image unhashable: equal images still
# have equal hashes, and images stay usable as dict keys and in sets. The
# dicts are private copies; treat them as read-only.
@attrs.frozen(repr=False)
class Image:
    """What to build: a base, ordered layers, and the defaults of its containers.

    ``Image("web:1.0", base="busybox", layers=[...], env={...}, workdir="/www",
    user="root", cmd=[...], labels={...}, limits=Limits(...))``. A plain
    string in ``layers`` is ``Layer.run(string)``; a string ``cmd`` is run by
    ``/bin/sh -c``. ``context`` (the build context folder) is not part of the
    image's identity: it is ignored by ``==`` and by :meth:`to_yaml`. When it
    is set, every copy source is checked to exist inside it.

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
    context: str | None = attrs.field(default=None, converter=_convert_context, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.context is not None:
            for i, layer in enumerate(self.layers):
                if layer.kind == "copy":
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
        return _YamlReader(path).read_image(text, context)

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
        if self.cmd is not None:
            data["cmd"] = list(self.cmd)
        if self.limits != Limits():
            data["limits"] = self.limits.to_dict()
        return _dump_yaml(data)

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
        import html  # noqa: PLC0415  (deferred: only Jupyter needs it)
        import json  # noqa: PLC0415

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


# --------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------

_TOP_KEYS = ("name", "base", "env", "workdir", "user", "labels", "layers", "cmd", "limits")
_LAYER_KEYS = ("run", "copy", "env", "workdir", "network")
_COPY_KEYS = ("src", "dest", "mode")
_LIMIT_KEYS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset", "pids")

_TAG = "tag:yaml.org,2002:"
_YAML_ODD_CHARS = "\x85\u2028\u2029\ufeff"


def _dump_yaml(data: Mapping[str, object]) -> str:
    """Emit ``data`` with block style at the top, flow style for small leaf values.

    The node tree is built here rather than through a Dumper subclass so the
    style of each value is explicit and no global PyYAML state is touched.
    The serializer still quotes any string that would read back as something
    else ("8080", "on", "~").
    """
    root = yaml.MappingNode(_TAG + "map", [], flow_style=False)
    for key, value in data.items():
        if key == "layers":
            assert isinstance(value, list)
            items = [_layer_node(item) for item in value]
            node: Any = yaml.SequenceNode(_TAG + "seq", items, flow_style=False)
        else:
            node = _value_node(value)
        root.value.append((_value_node(key), node))
    text: str = yaml.serialize(root, Dumper=yaml.SafeDumper, allow_unicode=True, width=1 << 16)
    return text


def _layer_node(item: object) -> Any:
    assert isinstance(item, dict)
    pairs = [(_value_node(k), _value_node(v)) for k, v in item.items()]
    return yaml.MappingNode(_TAG + "map", pairs, flow_style=False)


def _value_node(value: object) -> Any:
    if isinstance(value, bool):
        return yaml.ScalarNode(_TAG + "bool", "true" if value else "false")
    if isinstance(value, int):
        return yaml.ScalarNode(_TAG + "int", str(value))
    if isinstance(value, float):
        # PyYAML's own spelling, so that "1e-05" reads back as a float.
        text = repr(value).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        return yaml.ScalarNode(_TAG + "float", text)
    if isinstance(value, str):
        if any(ch in _YAML_ODD_CHARS or ord(ch) < 32 and ch != "\n" for ch in value):
            # PyYAML writes NEL, LS, PS and BOM raw in plain and block styles
            # and then reads them back as line breaks; double quotes escape them.
            style: str | None = '"'
        else:
            # Multi-line scripts read best as "|" blocks; the emitter falls
            # back to a quoted style by itself when a block cannot hold the text.
            style = "|" if "\n" in value else None
        return yaml.ScalarNode(_TAG + "str", value, style=style)
    if isinstance(value, list):
        return yaml.SequenceNode(_TAG + "seq", [_value_node(v) for v in value], flow_style=True)
    if isinstance(value, dict):
        pairs = [(_value_node(k), _value_node(v)) for k, v in value.items()]
        return yaml.MappingNode(_TAG + "map", pairs, flow_style=True)
    raise TypeError(f"cannot write {value!r} as YAML")  # a bug here, never user input


def _join_key(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key or key.startswith("["):
        return prefix + key
    return f"{prefix}.{key}"


class _YamlReader:
    """Turns composed YAML nodes into spec values, tracking key paths and lines.

    PyYAML's constructor is not used: it loses line numbers, accepts duplicate
    keys, and can fail with bare ValueErrors (e.g. on "2020-13-45"). Every
    node's position is recorded under its key path so that a SpecError raised
    later by a constructor (keyed ``limits.memory``) can be pointed at its line.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.nodes: dict[str, Any] = {}

    # -- errors -----------------------------------------------------------

    def fail(self, reason: str, key: str, node: Any) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else None
        raise SpecError(reason, key=key, path=self.path, line=line)

    def relocate(self, err: SpecError, prefix: str = "") -> SpecError:
        """``err`` re-keyed under ``prefix`` and placed at the line of the nearest known node."""
        key = _join_key(prefix, err.key)
        probe = key
        while probe and probe not in self.nodes:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        node = self.nodes.get(probe) or self.nodes.get(prefix) or self.nodes.get("")
        line = node.start_mark.line + 1 if node is not None else None
        return SpecError(err.reason, key=key, path=self.path, line=line)

    # -- structure --------------------------------------------------------

    def mapping(self, node: Any, key: str, allowed: tuple[str, ...] | None) -> list[tuple[str, Any]]:
        """The (name, value node) pairs of a mapping, after checking keys."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(f"expected a mapping, got {self.describe(node)}", key, node)
        seen: dict[str, Any] = {}
        pairs = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(f"expected a plain key, got {self.describe(key_node)}", key, key_node)
            # The key's text, not its YAML 1.1 value: "on:" or "1.0:" are names here.
            name = key_node.value
            child = _join_key(key, name)
            if allowed is not None and name not in allowed:
                self.fail(f"unknown key {name!r}; allowed: {', '.join(allowed)}", child, key_node)
            if name in seen:
                first = seen[name].start_mark.line + 1
                self.fail(f"duplicate key {name!r} (first at line {first})", child, key_node)
            seen[name] = key_node
            self.nodes[child] = value_node
            pairs.append((name, value_node))
        return pairs

    def describe(self, node: Any) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        tag = node.tag.rsplit(":", 1)[-1]
        if tag == "null":
            return "nothing (null)"
        if tag == "str":
            return f"the string {node.value!r}"
        return f"{tag} {node.value}"

    def scalar(self, node: Any, key: str) -> object:
        """The Python value of a scalar: str, int, float, bool or None."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(f"expected a single value, got {self.describe(node)}", key, node)
        tag = node.tag
        if tag == _TAG + "str":
            return str(node.value)
        if tag == _TAG + "null":
            return None
        if tag in (_TAG + "bool", _TAG + "int", _TAG + "float"):
            try:
                constructor = yaml.constructor.SafeConstructor()
                value: object = constructor.construct_object(node)
                return value
            except (ValueError, OverflowError, yaml.YAMLError) as err:
                self.fail(f"cannot read {node.value!r}: {err}", key, node)
        if tag == _TAG + "timestamp":
            # Dates are kept as the text written ("2024-01-31").
            return str(node.value)
        self.fail(f"unsupported YAML tag {tag!r}", key, node)

    def string(self, node: Any, key: str, *, words: bool = False) -> str:
        """A string field. Numbers are taken as written ("1000", "1.10"); booleans and null are refused.

        With ``words``, booleans are taken as written too: in a script or an
        argv, ``true``/``yes``/``on`` are ordinary words (``run: true``).
        """
        value = self.scalar(node, key)
        if isinstance(value, bool) and words:
            return str(node.value)
        if isinstance(value, bool):
            self.fail(
                f"expected a string, got the boolean {node.value!r}"
                " (YAML reads yes/no/on/off/true/false as booleans; quote it)",
                key,
                node,
            )
        if value is None:
            self.fail("expected a string, got nothing (null)", key, node)
        return str(node.value)

    def optional_number(self, node: Any, key: str) -> object:
        """A limit or mode: the scalar as is (the constructors check it); null means unset."""
        return self.scalar(node, key)

    # -- the document -------------------------------------------------------

    def compose(self, text: str) -> Any:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            reason = err.problem or err.context or "syntax error"
            # PyYAML notices a mistake where parsing fails, often a line after
            # the real one; its context mark says where the construct began.
            if err.context and err.context_mark is not None:
                reason += f" ({err.context}: see line {err.context_mark.line + 1})"
            raise SpecError(
                f"invalid YAML: {reason}", path=self.path, line=mark.line + 1 if mark is not None else None
            ) from None
        except yaml.reader.ReaderError as err:
            line = text.count("\n", 0, err.position) + 1
            raise SpecError(
                f"invalid YAML: {err.reason} character {err.character!r}", path=self.path, line=line
            ) from None
        except yaml.YAMLError as err:
            raise SpecError(f"invalid YAML: {err}", path=self.path) from None
        except RecursionError:
            raise SpecError("invalid YAML: nested too deeply", path=self.path) from None

    def read_image(self, text: object, context: str | None) -> Image:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as err:
                raise SpecError(f"the YAML is not UTF-8 text: {err.reason}", path=self.path) from None
        if not isinstance(text, str):
            raise SpecError(f"expected YAML text, got {_type_name(text)}", path=self.path)
        root = self.compose(text)
        if root is None:
            raise SpecError(
                "the document is empty; expected a mapping with at least 'name'", path=self.path, line=1
            )
        if not isinstance(root, yaml.MappingNode):
            self.fail(f"the document must be a mapping of image keys, got {self.describe(root)}", "", root)
        self.nodes[""] = root
        values: dict[str, object] = {}
        for name, node in self.mapping(root, "", _TOP_KEYS):
            if name in ("name", "base", "workdir", "user"):
                values[name] = self.string(node, name)
            elif name in ("env", "labels"):
                values[name] = {
                    key: self.variable(value, f"{name}.{key}")
                    for key, value in self.mapping(node, name, None)
                }
            elif name == "layers":
                values[name] = self.layers(node)
            elif name == "cmd":
                values[name] = self.cmd(node)
            else:
                values[name] = {
                    key: self.optional_number(value, f"limits.{key}")
                    for key, value in self.mapping(node, "limits", _LIMIT_KEYS)
                }
        if "name" not in values:
            self.fail("missing required key 'name' (the image name, like 'web:1.0')", "name", root)
        try:
            return Image(**values, context=context)
        except SpecError as err:
            raise self.relocate(err) from None

    def variable(self, node: Any, key: str) -> str:
        """An env or label value: numbers become their text (as Docker Compose does)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(f"expected a string value, got {self.describe(node)}", key, node)
        return self.string(node, key)

    def cmd(self, node: Any) -> object:
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.nodes[f"cmd[{i}]"] = item
                items.append(self.string(item, f"cmd[{i}]", words=True))
            return items
        # The shell form must be written as a string: "cmd: 5" is a mistake.
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
            return str(node.value)
        self.fail(
            f"expected a list of strings or a shell command string, got {self.describe(node)}", "cmd", node
        )

    def layers(self, node: Any) -> list[Layer]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(f"expected a list of layers, got {self.describe(node)}", "layers", node)
        layers = []
        for i, item in enumerate(node.value):
            key = f"layers[{i}]"
            self.nodes[key] = item
            kind, args = self.layer_args(item, key)
            try:
                if kind == "run":
                    layers.append(Layer.run(args["script"], network=args["network"]))
                elif kind == "copy":
                    layers.append(Layer.copy(args["src"], args["dest"], mode=args["mode"]))
                elif kind == "env":
                    layers.append(Layer.env(args["values"]))
                else:
                    layers.append(Layer.workdir(args["path"]))
            except SpecError as err:
                raise self.relocate(err, key) from None
        return layers

    def layer_args(self, node: Any, key: str) -> tuple[str, dict[str, Any]]:
        """The kind of a layer item and the arguments of its constructor."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _TAG + "null":
                self.fail("empty layer; expected a script string or a mapping like {run: ...}", key, node)
            return "run", {"script": self.string(node, key, words=True), "network": "host"}
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                f"expected a script string or a mapping like {{run: ...}}, got {self.describe(node)}",
                key,
                node,
            )
        fields = dict(self.mapping(node, key, _LAYER_KEYS))
        kinds = [name for name in fields if name in LAYER_KINDS]
        if len(kinds) != 1:
            found = " and ".join(repr(k) for k in kinds) if kinds else "none"
            self.fail(f"a layer needs exactly one of {', '.join(LAYER_KINDS)}; found {found}", key, node)
        kind = kinds[0]
        if "network" in fields and kind != "run":
            self.fail(
                f"'network' only applies to run layers, not {kind}", f"{key}.network", fields["network"]
            )
        value = fields[kind]
        if kind == "run":
            network = self.string(fields["network"], f"{key}.network") if "network" in fields else "host"
            return kind, {"script": self.string(value, f"{key}.run", words=True), "network": network}
        if kind == "copy":
            spec = dict(self.mapping(value, f"{key}.copy", _COPY_KEYS))
            for required in ("src", "dest"):
                if required not in spec:
                    self.fail(
                        f"missing {required!r}; copy needs src and dest (mode is optional)",
                        f"{key}.copy.{required}",
                        value,
                    )
            return kind, {
                "src": self.string(spec["src"], f"{key}.copy.src"),
                "dest": self.string(spec["dest"], f"{key}.copy.dest"),
                "mode": self.mode(spec["mode"], f"{key}.copy.mode") if "mode" in spec else None,
            }
        if kind == "env":
            values = {
                name: self.variable(v, f"{key}.env.{name}")
                for name, v in self.mapping(value, f"{key}.env", None)
            }
            return kind, {"values": values}
        return kind, {"path": self.string(value, f"{key}.workdir")}

    def mode(self, node: Any, key: str) -> object:
        """A file mode, read from its text like chmod: ``0644``, ``644`` and ``"0644"`` all mean 0o644.

        Reading the text rather than the YAML 1.1 value avoids ``644`` silently
        meaning decimal 644 (0o1204).
        """
        value = self.scalar(node, key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(f"expected octal permission bits like '0644', got {node.value!r}", key, node)
        text = str(node.value)
        digits = text[2:] if text[:2].lower() == "0o" else text
        if not re.fullmatch(r"[0-7]+", digits):
            self.fail(f"expected octal permission bits like '0644', got {text!r}", key, node)
        return digits
