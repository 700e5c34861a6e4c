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
    "duration",
    "env",
    "env_name",
    "env_value",
    "has_control_chars",
    "hostname",
    "labels",
    "network_name",
    "onbuild",
    "paths",
    "ports",
    "published_ports",
    "relative_path",
    "restart_policy",
    "stop_signal",
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


def url(value: object, key: str) -> str:
    """An http or https URL with a host, without white space or control characters (``ADD URL``)."""
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^/?#\s]+[^\s]*", value):
        raise SpecError(f"expected an http:// or https:// URL with a host, got {value!r}", key=key)
    if has_control_chars(value):
        raise SpecError(f"invalid URL {value!r}: control characters are not allowed", key=key)
    return value


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


# --------------------------------------------------------------------------
# The rest of an image's runtime config: ports, volumes, stop signal, durations
# --------------------------------------------------------------------------

_PORT_RE = re.compile(r"([0-9]{1,5})(?:/(tcp|udp|sctp))?")


def ports(value: object, key: str = "exposed_ports") -> tuple[str, ...]:
    """Exposed ports as Docker writes them ("80/tcp", "53/udp"): a port alone
    (int or digits) means tcp. Sorted, each once. Ranges are not taken: say each port."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SpecError(f"expected a list of ports like '80/tcp', got {type_name(value)}", key=key)
    out = set()
    for i, item in enumerate(value):
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        match = _PORT_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise SpecError(
                f"expected a port from 1 to 65535, optionally /tcp, /udp or /sctp, got {item!r}",
                key=f"{key}[{i}]",
            )
        out.add(f"{int(match.group(1))}/{match.group(2) or 'tcp'}")
    return tuple(sorted(out, key=lambda p: (int(p.split("/")[0]), p)))


def paths(value: object, key: str) -> tuple[str, ...]:
    """A list of absolute paths (an image's volumes), each once, in the order given."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise SpecError(f"expected a list of absolute paths, got {type_name(value)}", key=key)
    out: list[str] = []
    for i, item in enumerate(value):
        path = absolute_path(item, f"{key}[{i}]")
        if path not in out:
            out.append(path)
    return tuple(out)


_SIGNAL_RE = re.compile(r"(?:SIG)?[A-Z][A-Z0-9]*(?:[+-][0-9]{1,2})?|[0-9]{1,2}", re.IGNORECASE)


def stop_signal(value: object, key: str = "stop_signal") -> str | None:
    """A signal as Docker's ``StopSignal`` holds it ("SIGTERM", "TERM", "15"),
    kept as written; the runtime says whether this host has it."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _SIGNAL_RE.fullmatch(value):
        raise SpecError(f"expected a signal name like 'SIGTERM' or a number, got {value!r}", key=key)
    return value



def onbuild(value: object, key: str = "onbuild") -> tuple[str, ...]:
    """Docker's ``OnBuild``: the Dockerfile instructions (as written, without
    ``ONBUILD``) that a Dockerfile built FROM the image runs first."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SpecError(f"expected a list of instructions, got {type_name(value)}", key=key)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or "\0" in item:
            raise SpecError(f"expected a Dockerfile instruction, got {item!r}", key=f"{key}[{i}]")
    return tuple(value)

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: object, key: str) -> float:
    """Seconds (an int or float >= 0), or Go's duration text ("30s", "1m30s",
    "500ms"), as Docker's healthcheck options take it. 0 means "the default"."""
    seconds: float
    if isinstance(value, bool):
        seconds = -1.0
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text, seconds, pos = value.strip(), 0.0, 0
        while pos < len(text):
            match = _DURATION_PART.match(text, pos)
            if match is None:
                if text == "0":
                    break
                raise SpecError(
                    f"expected seconds or a duration like '30s', '1m30s' or '500ms', got {value!r}", key=key
                )
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
    else:
        raise SpecError(
            f"expected seconds or a duration like '30s', got {value!r} ({type_name(value)})", key=key
        )
    if not 0 <= seconds < 1e9:  # (NaN fails this too)
        raise SpecError(f"expected a duration of 0 or more seconds, got {value!r}", key=key)
    return seconds


_RESTART_RE = re.compile(r"(no|always|unless-stopped)|on-failure(?::([0-9]{1,9}))?")


def restart_policy(value: object, key: str = "restart") -> str:
    """Docker's restart policy: "no", "always", "unless-stopped",
    "on-failure" or "on-failure:N" (at most N restarts; 0 or none: no
    limit). None means "no". Returned as written, "on-failure:0" as "on-failure"."""
    if value is None:
        return "no"
    match = _RESTART_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise SpecError(
            "expected a restart policy 'no', 'always', 'unless-stopped', 'on-failure' or"
            f" 'on-failure:N', got {value!r}",
            key=key,
        )
    if match.group(1):
        return match.group(1)
    retries = int(match.group(2) or 0)
    return f"on-failure:{retries}" if retries else "on-failure"


# --------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------

_NETWORK_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_LABEL_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def volume_name(value: object, key: str = "volume") -> str:
    """A volume's name, as docker takes it: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, at most 128 characters."""
    if not isinstance(value, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}", value):
        raise SpecError(
            f"invalid volume name {value!r}: expected 2 to 128 characters of letters, digits, '_', '.'"
            " or '-', the first a letter or digit",
            key=key,
        )
    return value


def network_name(value: object, key: str = "network") -> str:
    """A network's name: a letter or digit, then letters, digits, "_", "." or
    "-", at most 63 in all (like Docker's)."""
    if not isinstance(value, str) or not _NETWORK_NAME_RE.fullmatch(value):
        raise SpecError(
            f"expected a network name (a letter or digit, then letters, digits, '_', '.' or '-';"
            f" at most 63), got {value!r}",
            key=key,
        )
    return value


def hostname(value: object, key: str = "hostname") -> str:
    """A host name or alias a container answers to (RFC 1123: dot-separated
    labels of letters, digits and inner hyphens; at most 253 characters)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 253
        or not all(_HOST_LABEL_RE.fullmatch(label) for label in value.split("."))
    ):
        raise SpecError(
            f"expected a host name (letters, digits, inner '-', labels joined by '.'), got {value!r}", key=key
        )
    return value


_DNS_OPTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(?::[0-9]{1,4})?")


def dns_settings(
    servers: object = (), search: object = (), options: object = (), key: str = "dns"
) -> dict[str, list[str]]:
    """A container's resolver settings, as ``docker run --dns/--dns-search/--dns-option``
    (docker-py's ``dns``, ``dns_search``, ``dns_opt``): lists of IPv4 name
    servers, search domains (host names) and resolver options like
    "ndots:2"; only those given are in the result ({} for none)."""
    out: dict[str, list[str]] = {}
    for name, value, check in (
        ("servers", servers, lambda v, k: _host_ip(v, k)),
        ("search", search, hostname),
        ("options", options, None),
    ):
        if value is None:
            continue
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise SpecError(f"expected a list of strings, got {type_name(value)}", key=f"{key}.{name}")
        items = []
        for v in value:
            if check is not None:
                items.append(check(v, f"{key}.{name}"))
            elif isinstance(v, str) and _DNS_OPTION_RE.fullmatch(v):
                items.append(v)
            else:
                raise SpecError(f"expected a resolver option like 'ndots:2', got {v!r}", key=f"{key}.{name}")
        if items:
            out[name] = items
    return out


def _host_ip(value: object, key: str) -> str:
    import ipaddress  # (deferred: only published ports need it)

    try:
        ip = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        ip = None
    if ip is None or ip.version != 4:
        raise SpecError(f"expected a host IPv4 address like '127.0.0.1', got {value!r}", key=key)
    return str(ip)


def _host_port(value: object, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SpecError(
            f"expected a host port from 1 to 65535 (or None for a free one), got {value!r}", key=key
        )
    return value


def published_ports(value: object, key: str = "ports") -> list[tuple[str, str, int | None]]:
    """Ports to publish, as ``containers.run(ports=...)`` takes them (docker-py's
    form): ``{"80/tcp": 8080}``, ``{"80": ("127.0.0.1", 8080)}``, ``{"53/udp":
    None}`` (a free host port), or a list of those values for one container
    port. Returns sorted ``(container port "80/tcp", host ip, host port or
    None)``; host ip "0.0.0.0" means every host address. tcp and udp only."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping like {{'80/tcp': 8080}}, got {type_name(value)}", key=key)
    out = set()
    for cport, binding in value.items():
        (port,) = ports([cport], key=key)
        if port.endswith("/sctp"):
            raise SpecError(f"only tcp and udp ports can be published, not {cport!r}", key=f"{key}.{cport}")
        bindings = binding if isinstance(binding, list) else [binding]
        for b in bindings:
            if isinstance(b, tuple) and len(b) == 2:
                ip, hport = _host_ip(b[0], f"{key}.{cport}"), _host_port(b[1], f"{key}.{cport}")
            elif isinstance(b, tuple) and len(b) == 1:
                ip, hport = _host_ip(b[0], f"{key}.{cport}"), None
            else:
                ip, hport = "0.0.0.0", _host_port(b, f"{key}.{cport}")
            out.add((port, ip, hport))
    return sorted(out, key=lambda t: (t[0], t[1], t[2] or 0))


_TMPFS_OPTIONS = re.compile(r"[A-Za-z0-9=._:+-]+(?:,[A-Za-z0-9=._:+-]+)*")


def tmpfs(value: object, key: str = "tmpfs") -> dict[str, str]:
    """Tmpfs mounts as ``{"/run": "size=16m,mode=1777"}`` (a fresh dict): an
    absolute target without ``..``, not ``/``, and mount options of letters,
    digits and ``=._:+-``, comma-separated ("" for none): each lands in one
    liblxc config line, which must carry it whole."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping like {{'/run': 'size=16m'}}, got {type_name(value)}", key=key)
    out = {}
    for target, options in value.items():
        absolute_path(target, key, allow_dotdot=False)
        if target.rstrip("/") == "" or any(ch.isspace() for ch in target):
            raise SpecError(
                f"invalid tmpfs target {target!r}: not / and no white space", key=f"{key}.{target}"
            )
        if not isinstance(options, str) or (options and not _TMPFS_OPTIONS.fullmatch(options)):
            raise SpecError(
                f"invalid tmpfs options {options!r}: expected comma-separated options like"
                " 'size=16m,mode=1777'",
                key=f"{key}.{target}",
            )
        out[target] = options
    return out


def console_size(value: object, key: str = "console_size") -> tuple[int, int] | None:
    """A terminal's size as ``(rows, columns)``, each 1 to 65535 (a winsize's
    fields), or None."""
    if value is None:
        return None
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 65536 for n in value)
    ):
        raise SpecError(f"expected (rows, columns), each 1 to 65535, got {value!r}", key=key)
    return int(value[0]), int(value[1])
