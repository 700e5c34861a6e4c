"""How the engine and its lists show in Jupyter: tables, not lines of reprs.

``engine.containers.list()`` and ``engine.images.list()`` return the list
types below: plain lists (everything a list does, ``==`` a list too) that a
notebook renders as a table through ``_repr_html_``. ``Engine`` renders its
root and both lists. Only a notebook calls these, so ``html`` loads then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pylxcore.spec.sizes import human_size

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage
    from pylxcore.runtime.container import Container


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """An HTML table of ``rows`` (plain text, escaped here) under ``headers``. Raises nothing."""
    import html

    left = "style='text-align:left'"
    head = "".join(f"<th {left}>{html.escape(h)}</th>" for h in headers)
    cells = ("".join(f"<td {left}>{html.escape(str(cell))}</td>" for cell in row) for row in rows)
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    cap = f"<caption {left}>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _memory(c: Container) -> str:
    """A running container's memory beside its limit ("12.0 MiB / 64.0 MiB"), else "-"."""
    if c.status() != "running":
        return "-"
    stats = c.stats()
    if stats.memory_bytes is None:
        return "?"
    used = human_size(stats.memory_bytes, binary=True)
    limit = stats.memory_limit_bytes
    return f"{used} / {'no limit' if limit is None else human_size(limit, binary=True)}"


class ContainerList(list["Container"]):
    """What ``containers.list()`` returns: a list, shown in Jupyter as a table."""

    def _repr_html_(self) -> str:
        rows = [
            (c.name, c.id[:12], c.image, c.status() + ("" if c.exit_code is None else f" ({c.exit_code})"),
             _memory(c))
            for c in self
        ]
        return html_table(("NAME", "ID", "IMAGE", "STATUS", "MEMORY / LIMIT"), rows,
                          f"{len(self)} container{'s' if len(self) != 1 else ''}")


class ImageList(list["BuiltImage"]):
    """What ``images.list()`` returns: a list, shown in Jupyter as a table."""

    def _repr_html_(self) -> str:
        import datetime

        rows = [
            (", ".join(im.tags) or "<none>", im.short_id, str(len(im.layer_keys)), human_size(im.size),
             datetime.datetime.fromtimestamp(im.created).strftime("%Y-%m-%d %H:%M"))
            for im in self
        ]
        return html_table(("TAGS", "IMAGE ID", "LAYERS", "SIZE", "CREATED"), rows,
                          f"{len(self)} image{'s' if len(self) != 1 else ''}")
