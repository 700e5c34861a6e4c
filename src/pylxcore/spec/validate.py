"""One validator per rule, for every value a user or an image supplies.

The spec (Python and YAML), ``containers.create()``, image import and the
command line all check their fields here, so a rule cannot drift between
them: three drifting copies of the environment rules once let a ``\\r``
through into liblxc's config (see docs/security.md). Each function returns
the value it accepted and raises :class:`~pylxcore.errors.SpecError` whose
``key`` names the field (``env.NAME``, ``workdir``, ``labels.NAME``, …).

Pure: the standard library and the errors, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pylxcore.errors import SpecError

__all__ = [
    "absolute_path",
    "command",
    "env",
    "env_name",
    "env_value",
    "has_control_chars",
    "labels",
    "relative_path",
    "type_name",
    "user",
    "workdir",
]


def type_name(value: object) -> str:
    """The name of ``value``'s type, for messages that say what was given ("got 5 (int)")."""
    return type(value).__name__


def has_control_chars(text: str) -> bool:
    """Whether ``text`` holds a C0 control character (0x00-0x1f) or DEL (0x7f).

    They make paths and names that print as something else, break one-line
    formats (liblxc's config is one: ``\\n`` and ``\\r`` start a new key), and
    NUL cannot cross execve or open at all.
    """
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def absolute_path(path: object, key: str, *, allow_dotdot: bool = True) -> str:
    """An absolute path without control characters (and, unless
    ``allow_dotdot``, without a ``..`` component)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise SpecError(f"expected an absolute path (starting with '/'), got {path!r}", key=key)
    if has_control_chars(path):
        raise SpecError(f"invalid path {path!r}: control characters are not allowed", key=key)
    if not allow_dotdot and ".." in path.split("/"):
        raise SpecError(f"invalid path {path!r}: must not contain '..'", key=key)
    return path


def relative_path(src: object, key: str) -> str:
    """A path relative to a build context as written: no ``..``, no control characters."""
    if not isinstance(src, str) or not src:
        raise SpecError(f"expected a non-empty relative path, got {src!r}", key=key)
    if has_control_chars(src):
        raise SpecError(f"invalid path {src!r}: control characters are not allowed", key=key)
    if src.startswith("/"):
        raise SpecError(f"invalid path {src!r}: must be relative to the build context, not absolute", key=key)
    # Refuse every "..", even one that stays inside ("a/../b"): the rule is
    # easy to state and a spec never needs it.
    if ".." in src.split("/"):
        raise SpecError(
            f"invalid path {src!r}: must not contain '..' (it would leave the build context)", key=key
        )
    return src


def workdir(path: object, key: str = "workdir") -> str:
    """A working directory: an absolute path that liblxc's one-line config
    (``lxc.init.cwd``) carries byte-exact, so no trailing white space either
    (liblxc trims it)."""
    absolute_path(path, key)
    assert isinstance(path, str)
    if path.endswith(" "):
        raise SpecError(f"invalid path {path!r}: trailing white space is not allowed", key=key)
    return path


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


def env_name(name: object, key: str = "env") -> str:
    """A variable name: printable, no ``=``, no white space (Docker is laxer
    only in what no shell could use)."""
    if (
        not isinstance(name, str)
        or not name
        or "=" in name
        or not name.isprintable()
        or any(ch.isspace() for ch in name)
    ):
        raise SpecError(
            f"invalid variable name {name!r}: expected printable characters without '=' or white space",
            key=f"{key}.{name}" if isinstance(name, str) and name.isprintable() else key,
        )
    return name


def env_value(name: str, value: object, key: str = "env") -> str:
    """A variable's value: any string but NUL (which no environment can
    hold). Newlines are fine, as in Docker: such values never pass through a
    config line (see lxcconfig.split_env)."""
    if not isinstance(value, str):
        raise SpecError(f"expected a string value, got {value!r} ({type_name(value)})", key=f"{key}.{name}")
    if "\0" in value:
        raise SpecError(
            "value contains a NUL character, which an environment cannot hold", key=f"{key}.{name}"
        )
    return value


def env(value: object, key: str = "env") -> dict[str, str]:
    """A mapping of variables (a fresh dict), or ``(name, value)`` pairs with no name twice."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items: list[Any] = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise SpecError(f"expected a mapping of variables, got {type_name(value)}", key=key)
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise SpecError(f"expected (name, value) pairs, got {item!r}", key=key)
        name = env_name(item[0], key)
        if name in out:
            raise SpecError(f"variable {name!r} is set twice", key=f"{key}.{name}")
        out[name] = env_value(name, item[1], key)
    return out


# --------------------------------------------------------------------------
# Labels, users, commands
# --------------------------------------------------------------------------


def labels(value: object, key: str = "labels") -> dict[str, str]:
    """Labels: names without white space, ``=`` or control characters; string values without NUL."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping of labels, got {type_name(value)}", key=key)
    out = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or re.search(r"[\s=]", name) or has_control_chars(name):
            raise SpecError(
                f"invalid label name {name!r}: expected a non-empty string without spaces or '='", key=key
            )
        if not isinstance(text, str) or "\0" in text:
            raise SpecError(
                f"expected a string value without NUL, got {text!r} ({type_name(text)})", key=f"{key}.{name}"
            )
        out[name] = text
    return out


_USER_PART = r"(?:[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10})"
_USER_RE = rf"{_USER_PART}(?::{_USER_PART})?"


def user(value: object, key: str = "user") -> str:
    """``name``, ``uid``, ``name:group`` or ``uid:gid`` (names as /etc/passwd allows them)."""
    if not isinstance(value, str) or not re.fullmatch(_USER_RE, value):
        raise SpecError(f"expected a user name or uid, optionally ':group' or ':gid', got {value!r}", key=key)
    return value


def command(value: object, key: str = "cmd") -> tuple[str, ...] | None:
    """An argv (a list of strings, the first not empty, none with NUL), a
    shell-form string (Docker's ``CMD x y``: run by ``/bin/sh -c``), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise SpecError("the command string is empty", key=key)
        value = ["/bin/sh", "-c", value]
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise SpecError(
            f"expected a list of strings or a shell command string, got {type_name(value)}", key=key
        )
    argv = tuple(value)
    if not argv:
        raise SpecError("the command is empty; leave it out to have none", key=key)
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            raise SpecError(f"expected a string, got {arg!r} ({type_name(arg)})", key=f"{key}[{i}]")
        if "\0" in arg:
            raise SpecError("an argument cannot contain a NUL character", key=f"{key}[{i}]")
    if not argv[0]:
        raise SpecError("the program name is empty", key=f"{key}[0]")
    return argv
