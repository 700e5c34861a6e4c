"""Sizes in bytes: reading them ("64M"), and writing them exactly (for YAML) or roughly (for people).

Every size the library reads or prints goes through here, so ``64M`` means
the same to a spec, a container's ``log_max_size`` and the command line, and
a size prints the same in a ``repr``, a table and an error message.
"""

from __future__ import annotations

import re

from pylxcore.errors import SpecError
from pylxcore.spec.validate import type_name

__all__ = ["MAX_INT64", "compact_size", "human_size", "parse_size"]

# Sizes (and pids) end up in cgroup files that hold a signed 64-bit number.
MAX_INT64 = 2**63 - 1

# A string for re.fullmatch, whose cache compiles it on first use: compiling
# every pattern when the package loads cost ~3 ms of every import. Digit counts
# are bounded: int() refuses strings over 4300 digits with a bare ValueError,
# and no real size needs more than 30.
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
        raise SpecError(f"expected {expected}, got {value!r} ({type_name(value)})", key=key)
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(_SIZE_RE, value, re.IGNORECASE)
        if match is None:
            raise SpecError(f"invalid size {value!r}: expected {expected}", key=key)
        # Fraction, not float: "1.1G" must not become 1181116006.4 by rounding
        # noise. Imported here: it pulls in decimal, which only sizes written
        # as text need.
        from fractions import Fraction

        exact = Fraction(match["num"]) * _SIZE_UNITS[match["unit"][:1].lower() if match["unit"] else ""]
        if exact.denominator != 1:
            raise SpecError(f"invalid size {value!r}: not a whole number of bytes", key=key)
        size = int(exact)
    if size <= 0:
        raise SpecError(f"invalid size {value!r}: expected {expected}", key=key)
    if size > MAX_INT64:
        raise SpecError(f"invalid size {value!r}: larger than 2**63-1 bytes", key=key)
    return size


def compact_size(size: int) -> str | int:
    """The shortest exact spelling of ``size`` (``"64M"``), or the int itself.

    Exact, unlike :func:`human_size`: ``parse_size(compact_size(n)) == n``, so
    it is the form a spec writes (``Limits.to_dict()``, YAML) and reads back.
    """
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return size


def human_size(size: float, *, binary: bool = False) -> str:
    """A size for people, rounded to 4 digits, as Docker prints them.

    ``"4.26MB"`` in powers of 1000 (``docker images``), or with ``binary``
    ``"1.5MiB"`` in powers of 1024 (``docker stats``, memory).
    """
    base = 1024.0 if binary else 1000.0
    units = ("B", "KiB", "MiB", "GiB", "TiB") if binary else ("B", "kB", "MB", "GB", "TB")
    value = float(size)
    for unit in units[:-1]:
        if value < base:
            return f"{value:.4g}{unit}"
        value /= base
    return f"{value:.4g}{units[-1]}"
