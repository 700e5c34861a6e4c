"""``ps``'s docker options: ``--filter``, ``-n``, ``-l``, ``-s`` and ``--format`` with a Go template."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pylxcore.cli.output import key_values
from pylxcore.errors import SpecError

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container

FILTERS = ("status", "name", "label", "ancestor", "exited", "id")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` options by key. Raises SpecError (an unknown
    key, a value missing, a status docker does not know)."""
    out = key_values(items, FILTERS, "ps")
    for value in out.get("status", ()):
        if value not in STATUSES:
            raise SpecError(f"invalid filter 'status={value}' (one of {', '.join(STATUSES)})", key="--filter")
    for value in out.get("exited", ()):
        if not value.lstrip("-").isdigit():
            raise SpecError(f"invalid filter 'exited={value}': not an exit code", key="--filter")
    return out


def wants_all(args: argparse.Namespace) -> bool:
    """Whether stopped containers are listed: ``-a``, ``-n``, ``-l``, or a
    status filter (as docker; ``exited=N`` alone lists none without ``-a``)."""
    filters = parse_filters(args.filter)
    return bool(args.all or args.last is not None or args.latest
                or any(s != "running" for s in filters.get("status", ())))


def _matches(
    container: Container, filters: dict[str, list[str]], image_ids: Callable[[str], str | None]
) -> bool:
    """Docker's rule: every key must match; a key given twice matches either value."""
    tests: dict[str, Callable[[str], bool]] = {
        "status": lambda v: container.state.value == v,
        "name": lambda v: v in container.name,
        "id": lambda v: container.id.startswith(v),
        "exited": lambda v: container.state.value == "exited" and container.exit_code == int(v),
        "label": lambda v: _label(container, v),
        "ancestor": lambda v: container.image == v or container.image_id == image_ids(v)
        or container.image_id.removeprefix("sha256:").startswith(v),
    }
    return all(any(tests[key](v) for v in values) for key, values in filters.items())


def _label(container: Container, spec: str) -> bool:
    labels = container._meta().labels
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)


def select(
    containers: list[Container], args: argparse.Namespace, image_ids: Callable[[str], str | None]
) -> list[Container]:
    """``containers`` (newest first) as ``--filter``, ``-n`` and ``-l`` keep them."""
    filters = parse_filters(args.filter)
    kept = [c for c in containers if _matches(c, filters, image_ids)]
    if args.latest:
        return kept[:1]
    if args.last is not None and args.last >= 0:
        return kept[: args.last]
    return kept


def size_text(container: Container) -> str:
    """The SIZE column (``-s``): the writable layer's size, as docker writes it."""
    from pylxcore.spec.sizes import human_size
    from pylxcore.store import dir_size

    return human_size(dir_size(container.dir / "upper"))


def render_rows(template: str, rows: list[dict[str, Any]]) -> str:
    """``--format TEMPLATE`` output (a ``table`` one has headers)."""
    from pylxcore.cli.gotemplate import render_table

    return render_table(template, rows)
