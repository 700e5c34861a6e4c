"""The Limits value: a container's resource limits, their converters and the memory_swap rule.

Whether the host can enforce a limit is the runtime's question
(``runtime/limits.py`` turns Limits into cgroup keys); what a limit *means*,
memory_swap included, is decided here alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import attrs

from pylxcore.errors import SpecError
from pylxcore.spec.sizes import MAX_INT64, compact_size, parse_size
from pylxcore.spec.validate import type_name

__all__ = ["Limits"]

_CPUSET_RE = r"[0-9]{1,6}(?:-[0-9]{1,6})?(?:,[0-9]{1,6}(?:-[0-9]{1,6})?)*"


def _int_value(value: object, key: str, low: int, high: int, also: str = "") -> int:
    """An int in [low, high]; digit strings are fine (CLI and env input).
    ``also`` names what else the caller took, for the message."""
    expected = f"expected {also}an integer from {low} to {high}"
    number: object = value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,30}", value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise SpecError(f"{expected}, got {value!r} ({type_name(value)})", key=key)
    if not low <= number <= high:
        raise SpecError(f"{expected}, got {value!r}", key=key)
    return number


def _convert_memory(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, str)):
        return parse_size(value, key="limits.memory")
    raise SpecError(
        f"expected a size like '64M' or bytes as an int, got {value!r} ({type_name(value)})",
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
        f"expected a size like '128M', bytes as an int, or -1, got {value!r} ({type_name(value)})",
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
        raise SpecError(f"{expected}, got {value!r} ({type_name(value)})", key="limits.cpus")
    cpus = float(number)
    if not math.isfinite(cpus) or not 0 < cpus <= 1024:
        raise SpecError(f"{expected}, got {value!r}", key="limits.cpus")
    return cpus


def _convert_cpu_shares(value: object) -> int | None:
    return None if value is None else _int_value(value, "limits.cpu_shares", 2, 262144)


def _convert_pids(value: object) -> int | None:
    if value is None:
        return None
    # -1 means "no limit", as with docker --pids-limit -1: it removes one (see Limits.merged).
    if value in (-1, "-1") and not isinstance(value, bool):
        return -1
    return _int_value(value, "limits.pids", 1, MAX_INT64, also="-1 (no limit) or ")


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
    ``pids`` the most processes, -1 for none: it removes a limit set before
    (the image's, or a container's in ``update``, as ``docker update
    --pids-limit -1``), so the limits a container runs with never hold it
    (see ``merged``). Whether the host can enforce a limit is decided when a
    container starts (LimitError), not here.

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

    def swap(self) -> int | None:
        """The swap alone that ``memory_swap`` allows (``memory_swap - memory``), -1 for unlimited.

        None when ``memory_swap`` is not set. This is what a cgroup v2
        ``memory.swap.max`` takes, where v1's ``memory.memsw`` takes
        ``memory_swap`` itself. Ask it of the limits a container runs with:
        a Limits that overrides another may set ``memory_swap`` alone.

        Raises:
            SpecError: (key ``limits.memory_swap``) when ``memory_swap`` is a
                size and ``memory`` is not set: the swap part is then unknown
                (Docker refuses this too).
        """
        if self.memory_swap is None or self.memory_swap == -1:
            return self.memory_swap
        if self.memory is None:
            raise SpecError("memory_swap needs memory to be set too", key="limits.memory_swap")
        return self.memory_swap - self.memory

    def merged(self, override: Limits) -> Limits:
        """Return these limits with every field that ``override`` sets replaced;
        ``pids=-1`` (in either) leaves no pids limit (None).

        Raises:
            SpecError: if the combination is invalid (memory_swap < memory).
        """
        changes = {
            f.name: getattr(override, f.name)
            for f in attrs.fields(Limits)
            if getattr(override, f.name) is not None
        }
        if changes.get("pids", self.pids) == -1:
            changes["pids"] = None
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """The set fields only, sizes spelled compactly ("64M") when exact; the YAML form."""
        data: dict[str, object] = {}
        for f in attrs.fields(Limits):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("memory", "memory_swap") and value != -1:
                value = compact_size(value)
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
            raise SpecError(f"expected a mapping of limits, got {type_name(data)}", key=key)
        allowed = [f.name for f in attrs.fields(Limits)]
        for name in data:
            if name not in allowed:
                raise SpecError(f"unknown limit {name!r}; allowed: {', '.join(allowed)}", key=f"{key}.{name}")
        try:
            return cls(**data)  # keys were checked above
        except SpecError as err:
            # The converters name "limits.<field>"; re-root under the caller's key.
            raise SpecError(err.reason, key=key + err.key[len("limits") :]) from None
