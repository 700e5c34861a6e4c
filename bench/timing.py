"""Timing and the results table: wall-clock samples, medians, rows with targets."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

# One measurement: a callable that does the work once and returns the seconds it took.
Sample = Callable[[], float]


def clocked(fn: Callable[..., object], *args: object, **kwargs: object) -> Sample:
    """A Sample that times the whole call ``fn(*args, **kwargs)``."""

    def sample() -> float:
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        return time.perf_counter() - t0

    return sample


def medians(samples: dict[str, Sample], runs: int, *, warmup: int = 1) -> dict[str, float]:
    """The median of ``runs`` samples of each, after ``warmup`` discarded ones.

    Round-robin (one of each in turn), so that load from the other users of
    this shared machine lands on every contender alike instead of on one.
    """
    times: dict[str, list[float]] = {name: [] for name in samples}
    for i in range(warmup + runs):
        for name, sample in samples.items():
            seconds = sample()
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class Row:
    """One line of the table: a pylxcore number, optionally against a baseline and a target.

    ``ratio`` is expressed the way the target reads: "x of the baseline" for an
    upper bound (``≤ 1.3×``), "x faster" (baseline / pylxcore) for a speed-up.
    """

    case: str
    measure: str
    value: float | None
    unit: str = "s"  # "s" values are shown in ms
    baseline: str = ""
    base_value: float | None = None
    ratio: float | None = None
    ratio_kind: str = ""  # "of" (pylxcore / baseline) or "faster" (baseline / pylxcore)
    target: str = ""
    met: bool | None = None
    note: str = ""


def at_most(case: str, measure: str, value: float, baseline: str, base: float | None, limit: float,
            note: str = "") -> Row:
    """Target: pylxcore takes at most ``limit`` times the baseline."""
    ratio = value / base if base else None
    return Row(case, measure, value, "s", baseline, base, ratio, "of", f"≤ {limit:g}×",
               None if ratio is None else ratio <= limit, note)


def faster(case: str, measure: str, value: float, baseline: str, base: float | None, factor: float,
           note: str = "") -> Row:
    """Target: pylxcore is at least ``factor`` times faster than the baseline."""
    ratio = base / value if base and value else None
    return Row(case, measure, value, "s", baseline, base, ratio, "faster", f"≥ {factor:g}× faster",
               None if ratio is None else ratio >= factor, note)


def info(case: str, measure: str, value: float, baseline: str, base: float | None, note: str = "") -> Row:
    """A baseline shown for scale, with no target."""
    ratio = value / base if base else None
    return Row(case, measure, value, "s", baseline, base, ratio, "of", "", None, note)


def absolute(case: str, measure: str, value: float, unit: str, limit: float, baseline: str = "",
             base: float | None = None, note: str = "") -> Row:
    """Target: the value itself is at most ``limit`` (in ``unit``)."""
    shown = f"{limit * 1e3:g} ms" if unit == "s" else f"{limit:g} {unit}"
    return Row(case, measure, value, unit, baseline, base, None, "", f"≤ {shown}", value <= limit, note)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        ms = value * 1e3
        if ms >= 1000:
            return f"{value:.2f} s"
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "—"
    return f"{row.ratio:.2f}× faster" if row.ratio_kind == "faster" else f"{row.ratio:.2f}×"


def _met(row: Row) -> str:
    if not row.target:
        return ""
    if row.met is None:
        return "n/a"
    return "yes" if row.met else "**NO**"


HEADER = ("case", "pylxcore", "median", "baseline", "baseline median", "ratio", "target", "met")


def table(rows: list[Row]) -> str:
    """A GitHub-markdown table (also readable as plain text in a terminal)."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    for r in rows:
        measure = r.measure + (f" ({r.note})" if r.note else "")
        cells = (r.case, measure, fmt(r.value, r.unit), r.baseline or "—",
                 fmt(r.base_value, r.unit), _ratio(r), r.target or "—", _met(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
