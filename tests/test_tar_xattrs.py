"""A ``tar:`` base is foreign data: the xattrs it carries must not reach the
store when they mean something to overlayfs (``trusted.overlay.*`` would forge
opaque dirs, redirects and whiteouts in the store's layers) or to the host's
security policy. The rest (file capabilities, user xattrs) is kept."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from pylxcore import Engine, Image
from pylxcore.build.bases import busybox_path

FORBIDDEN = {
    "etc": {"trusted.overlay.opaque": "y", "user.overlay.opaque": "y"},
    "etc/motd": {"trusted.overlay.redirect": "/bin", "security.selinux": "system_u:object_r:shadow_t:s0"},
    "srv": {"trusted.overlay.redirect": "/etc", "trusted.overlay.origin": "x"},
}


def _tar_base(path: Path) -> None:
    """A root with busybox as /bin/sh and a few entries carrying bad xattrs."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(busybox_path(), arcname="bin/busybox")
        sh = tarfile.TarInfo("bin/sh")
        sh.type, sh.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(sh)
        for name in ("etc", "srv"):
            d = tarfile.TarInfo(name)
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            d.pax_headers = {"SCHILY.xattr." + k: v for k, v in FORBIDDEN[name].items()}
            if name == "etc":
                d.pax_headers["SCHILY.xattr.user.note"] = "kept"
            tar.addfile(d)
        motd = tarfile.TarInfo("etc/motd")
        motd.size, motd.mode = 6, 0o644
        motd.pax_headers = {"SCHILY.xattr." + k: v for k, v in FORBIDDEN["etc/motd"].items()}
        tar.addfile(motd, io.BytesIO(b"hello\n"))


def test_tar_base_drops_overlay_and_host_policy_xattrs(engine: Engine, tmp_path: Path) -> None:
    archive = tmp_path / "rootfs.tar"
    _tar_base(archive)
    # A step on top: the base layer must work as an overlay lower layer.
    built = engine.images.build(
        Image("tarx/test:1", base=f"tar:{archive}", layers=["busybox cat /etc/motd > /srv/copy"])
    )
    fs = engine.store.layer_dir(built.layer_keys[0]) / "fs"
    for rel, bad in FORBIDDEN.items():
        left = set(os.listxattr(fs / rel, follow_symlinks=False)) & set(bad)
        assert not left, f"{rel} kept {left}"
    # What is not overlayfs's or the host's policy comes through.
    assert os.getxattr(fs / "etc", "user.note") == b"kept"
    out = engine.containers.run("tarx/test:1", ["busybox", "cat", "/srv/copy"], remove=True)
    assert out.stdout == b"hello\n", out
