"""The Healthcheck value: how to tell that a container of an image works (Docker's HEALTHCHECK).

It is part of an image's config, kept whole through import and export;
running it is the runtime's business, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

import pylxcore.spec.validate as validate
from pylxcore.errors import SpecError

__all__ = ["Healthcheck", "HEALTHCHECK_KEYS"]

# The keys of its mapping form (YAML, image records), in the order written.
HEALTHCHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period")
_KINDS = ("CMD", "CMD-SHELL", "NONE")


def _convert_test(value: object) -> tuple[str, ...]:
    """Docker's ``Test``: ("CMD", prog, args...), ("CMD-SHELL", script) or ("NONE",).

    A string is a shell script (CMD-SHELL); a list that does not start with
    one of those words is an argv (CMD).
    """
    key = "healthcheck.test"
    if isinstance(value, str):
        if not value.strip():
            raise SpecError("the healthcheck command is empty", key=key)
        value = ("CMD-SHELL", value)
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise SpecError(f"expected a list of strings or a shell command string, got {value!r}", key=key)
    test = tuple(value)
    for i, arg in enumerate(test):
        if not isinstance(arg, str) or "\0" in arg:
            raise SpecError(f"expected a string without NUL, got {arg!r}", key=f"{key}[{i}]")
    if not test:
        raise SpecError("the healthcheck test is empty; leave it out to have none", key=key)
    if test[0] not in _KINDS:
        test = ("CMD", *test)
    kind, args = test[0], test[1:]
    if kind == "NONE" and args:
        raise SpecError("NONE takes no arguments", key=key)
    if kind == "CMD-SHELL" and len(args) != 1:
        raise SpecError(f"CMD-SHELL takes one shell command string, got {len(args)}", key=key)
    if kind == "CMD" and (not args or not args[0]):
        raise SpecError("CMD needs a program to run", key=key)
    return test


def _interval(value: object) -> float:
    return validate.duration(0 if value is None else value, "healthcheck.interval")


def _timeout(value: object) -> float:
    return validate.duration(0 if value is None else value, "healthcheck.timeout")


def _start_period(value: object) -> float:
    return validate.duration(0 if value is None else value, "healthcheck.start_period")


def _convert_retries(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise SpecError(f"expected a number of retries from 0 up, got {value!r}", key="healthcheck.retries")
    return value


@attrs.frozen
class Healthcheck:
    """``Healthcheck("curl -f http://localhost/", interval="30s", retries=3)``.

    ``test`` is Docker's form: ``("CMD", prog, arg, ...)``, ``("CMD-SHELL",
    script)`` (a plain string becomes this) or ``("NONE",)`` (turns off a
    check the base image has). Durations are seconds (numbers) or Go-style
    text ("30s", "1m30s"); 0 means Docker's default, as does ``retries=0``.

    Raises:
        SpecError: for a bad value, keyed ``healthcheck.test``, ``healthcheck.interval``, ...
    """

    test: tuple[str, ...] = attrs.field(converter=_convert_test)
    interval: float = attrs.field(default=0.0, converter=_interval)
    timeout: float = attrs.field(default=0.0, converter=_timeout)
    retries: int = attrs.field(default=0, converter=_convert_retries)
    start_period: float = attrs.field(default=0.0, converter=_start_period)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Healthcheck:
        """From the mapping form (see HEALTHCHECK_KEYS). Raises SpecError for unknown keys or values."""
        unknown = sorted(set(data) - set(HEALTHCHECK_KEYS))
        if unknown:
            raise SpecError(
                f"unknown key {unknown[0]!r}; allowed: {', '.join(HEALTHCHECK_KEYS)}",
                key=f"healthcheck.{unknown[0]}",
            )
        if "test" not in data:
            raise SpecError("missing 'test', the command to run", key="healthcheck.test")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The mapping form: ``test`` as a list, and only the options that are set."""
        out: dict[str, Any] = {"test": list(self.test)}
        for name in HEALTHCHECK_KEYS[1:]:
            value = getattr(self, name)
            if value:
                out[name] = value
        return out
