"""In Jupyter the engine and its lists render as tables (pylxcore/notebook.py)."""

from __future__ import annotations

from pylxcore import Engine, Limits
from pylxcore.notebook import html_table


def test_lists_are_lists_and_render_as_tables(engine: Engine, busybox: str) -> None:
    with engine.containers.run(busybox, ["sleep", "60"], detach=True, name="nb1",
                               limits=Limits(memory="64M")) as c:
        engine.containers.create(busybox, ["true"], name="nb2")
        listed = engine.containers.list(all=True)
        assert isinstance(listed, list) and [x.name for x in listed] == ["nb1", "nb2"]
        table = listed._repr_html_()
        assert table.count("<tr>") == 3 and "2 containers" in table  # the header and one row each
        assert "nb1" in table and "running" in table and "/ 64MiB" in table  # memory beside its limit
        assert c.id[:12] in table
        images = engine.images.list()
        assert isinstance(images, list) and images == list(images)
        assert "test/busybox:1" in images._repr_html_()
        page = engine._repr_html_()
        assert str(engine.root) in page and "nb2" in page and "test/busybox:1" in page
        engine.containers.get("nb2").remove()


def test_html_table_escapes_what_it_shows() -> None:
    out = html_table(("A",), [("<b>&",)], "x<y")
    assert "&lt;b&gt;&amp;" in out and "x&lt;y" in out and "<b>&" not in out
