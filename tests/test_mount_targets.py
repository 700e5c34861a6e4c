"""Mount targets are resolved inside the container's root (SPEC §7).

An image that holds ``/etclink -> /etc`` once made ``Mount(src, "/etclink/x")``
create ``/etc/x`` on the host: liblxc's ``create=dir`` followed the link.
Now the library resolves the target within the image's tree and makes what
is missing in the container's own writable layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylxcore import Engine, Image, LXCError, Mount, SpecError


@pytest.fixture(params=[False, True], ids=["root", "userns"])
def userns(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def linky(engine: Engine) -> str:
    engine.images.build(
        Image(
            "test/linky:1",
            layers=[
                "ln -s /etc /etclink && ln -s ../../../../../.. /up && ln -s /missing/deep /dangling"
                " && mkdir -p /srv && chmod 0710 /srv && echo f > /afile"
            ],
        )
    )
    return "test/linky:1"


def test_target_through_an_image_symlink_stays_inside(
    engine: Engine, linky: str, userns: bool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello").write_text("hi\n")
    leaf = "pxtest-" + os.urandom(4).hex()
    targets = [f"/etclink/{leaf}", f"/up/{leaf}-up", f"/dangling/{leaf}"]
    try:
        r = engine.containers.run(
            linky,
            ["sh", "-c", f"cat /etc/{leaf}/hello /{leaf}-up/hello /missing/deep/{leaf}/hello"],
            mounts=[Mount(str(src), t, read_only=True) for t in targets],
            userns=userns,
            remove=True,
        )
        assert (r.exit_code, r.stdout) == (0, b"hi\nhi\nhi\n"), r
    finally:
        for host in (Path("/etc") / leaf, Path("/") / f"{leaf}-up", Path("/missing")):
            assert not host.exists(), f"{host} was created on the host"


def test_made_parents_keep_the_images_owner_and_mode(
    engine: Engine, linky: str, userns: bool, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()  # 0755: tmp_path itself is root's alone, closed to a userns container's root
    r = engine.containers.run(
        linky,
        ["stat", "-c", "%a %u", "/srv", "/srv/new"],
        mounts=[Mount(str(src), "/srv/new/leaf")],
        userns=userns,
        remove=True,
    )
    assert (r.exit_code, r.stdout) == (0, b"710 0\n755 0\n"), r


def test_a_file_on_the_way_is_refused(engine: Engine, linky: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        engine.containers.create(linky, ["true"], mounts=[Mount(str(tmp_path), "/afile/x")])
    assert info.value.key == "mounts[0].target"
    assert engine.containers.list(all=True) == []


def test_file_mount_onto_a_new_path(engine: Engine, linky: str, userns: bool, tmp_path: Path) -> None:
    f = tmp_path / "conf"
    f.write_text("setting=1\n")
    mounts = [Mount(str(f), "/etclink/app/conf")]
    r = engine.containers.run(linky, ["cat", "/etclink/app/conf"], mounts=mounts, userns=userns, remove=True)
    assert (r.exit_code, r.stdout) == (0, b"setting=1\n")
    assert not Path("/etc/app/conf").exists() or Path("/etc/app/conf").read_text() != "setting=1\n"


def test_a_symlink_planted_by_the_container_is_not_followed_at_restart(
    engine: Engine, linky: str, userns: bool, tmp_path: Path
) -> None:
    """The container moves its mount's parent away and puts a link to /etc in
    its place: the next start must not mount (or create anything) through it."""
    leaf = "pxtest-" + os.urandom(4).hex()
    src = tmp_path / "src"
    src.mkdir()
    c = engine.containers.create(
        linky,
        ["sh", "-c", f"test -e /plant/{leaf} && mv /plant /plant.old && ln -s /etc /plant; true"],
        mounts=[Mount(str(src), f"/plant/{leaf}")],
        userns=userns,
    )
    try:
        c.start()
        assert c.wait(timeout=30) == 0
        try:
            c.start()
            c.wait(timeout=30)
        except LXCError:
            pass  # refused to start: fine, as long as nothing was made on the host
        assert not (Path("/etc") / leaf).exists()
    finally:
        c.remove(force=True)
