"""Points in time as docker's ``--since``/``--until`` take them."""

from __future__ import annotations

import re
import time

from pylxcore.errors import SpecError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(text: str, *, now: float | None = None, key: str = "time") -> float:
    """A unix time from docker's forms: a unix timestamp ("1700000000",
    "1700000000.5"), a Go duration before now ("10m", "1h30m", "90s"), or
    an RFC 3339 date ("2024-01-02T03:04:05Z", "2024-01-02", with an
    offset or none: UTC). Raises SpecError (key ``key``) naming the text."""
    from datetime import UTC, datetime  # (only --since/--until need it)

    now = time.time() if now is None else now
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text and _DURATION.sub("", text) == "":
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(
            f"{text!r} is not a time: give a unix timestamp, a duration like 10m or 1h30m,"
            " or a date like 2024-01-02T03:04:05Z",
            key=key,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
