"""Dockerfiles built by pylxcore and by podman (buildah inside) give the same image.

Each case is a small Dockerfile and build context. Both builders start from
the same base: pylxcore's busybox base, exported by pylxcore as a
docker-archive and loaded into podman as ``busybox`` (or ``scratch``). The root
filesystems must match file by file (path, type, mode, owner, link target,
bytes; times are not compared) and so must the configs (Env, Cmd,
Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal,
Healthcheck). Heredocs are not here: podman 4.3's buildah does not know them
(tests/test_dockerfile.py checks them).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pylxcore import Engine, Image
from tests.conftest import require_lxc
from tests.test_interop import Podman, need_tools

pytestmark = pytest.mark.slow

# What podman's container export adds that no build made: the files it
# mounts over at run time, and buildah's own label.
NOISE = {"etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv"}
BUILDAH_LABEL = "io.buildah.version"


def archive(compression: str = "") -> bytes:
    """A small tar (gzip'ed with "gz") of owned files, modes, a link and folders, for ADD."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tf:
        for name, kind, mode, owner, data in [
            ("top", tarfile.DIRTYPE, 0o750, (7, 8), b""),
            ("top/f", tarfile.REGTYPE, 0o640, (7, 8), b"f\n"),
            ("top/x", tarfile.REGTYPE, 0o4755, (0, 0), b"#!/bin/sh\n"),
            ("top/l", tarfile.SYMTYPE, 0o777, (0, 0), b"f"),
            ("other/deep/g", tarfile.REGTYPE, 0o600, (1000, 1000), b"g\n"),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, (info.uid, info.gid), info.mtime = kind, mode, owner, 1_600_000_000
            if kind == tarfile.SYMTYPE:
                info.linkname = data.decode()
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ADDUSER = "RUN echo app:x:1234:1234::/tmp:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group\n"

# (id, Dockerfile, context files, build args, target). A context value is
# bytes, (bytes, mode), or ("link", target); a name ending in "/" is an empty folder.
CASES: list[tuple[str, str, dict[str, Any], dict[str, str], str | None]] = [
    (
        "run-shell",
        "FROM busybox\nRUN echo hi > /hi && mkdir -p /a/b && ln -s /hi /a/link && chmod 700 /a/b\n",
        {},
        {},
        None,
    ),
    (
        "run-exec",
        'FROM busybox\nRUN ["/bin/sh", "-c", "echo exec > /e"]\nRUN ["touch", "/t"]\n',
        {},
        {},
        None,
    ),
    ("run-no-errexit", "FROM busybox\nRUN false; echo survived > /s\n", {}, {}, None),
    (
        "shell",
        'FROM busybox\nSHELL ["/bin/sh", "-x", "-c"]\nRUN echo $0 > /shell 2>/dev/null\n',
        {},
        {},
        None,
    ),
    (
        "env-forms",
        'FROM busybox\nENV A=1 B="two words" C=\'$A\'\nENV D $A-x y\nRUN echo "$A|$B|$C|$D" > /env\n',
        {},
        {},
        None,
    ),
    (
        "substitution",
        "FROM busybox\nENV X=x EMPTY=\n"
        "ENV R1=${X:-d} R2=${UNSET:-d} R3=${EMPTY:-d} R5=${X:+alt} R6=${UNSET:+alt}"
        ' R7=${EMPTY:+alt} R8=\\$X R9="\\$X" R10=\'${X}\' R11=${X}y R12=$X$X R13="${X:-a b}"\n'
        'LABEL l1=$X l2="${UNSET:-dflt}"\n',
        {},
        {},
        None,
    ),
    ("escapes", 'FROM busybox\nENV P="a\\"b" Q=a\\ b R=\'it\'"\'"\'s\' S="tab\\tx" T=c\\\\d\n', {}, {}, None),
    ("arg-default", "FROM busybox\nARG V=default\nRUN echo $V > /v\n", {}, {}, None),
    (
        "arg-build-arg",
        'FROM busybox\nARG V=default\nARG U\nRUN echo "$V-$U" > /v\nENV W=$V\n',
        {},
        {"V": "given", "U": "u"},
        None,
    ),
    (
        "arg-before-from",
        "ARG BASE=busybox\nARG TAG=t1\nFROM ${BASE}\nARG TAG\nRUN echo $TAG > /tag\n",
        {},
        {},
        None,
    ),
    (
        "arg-env-precedence",
        "FROM busybox\nARG A=arg\nENV A=env\nRUN echo $A > /a\nARG A=arg2\nRUN echo $A > /b\n",
        {},
        {},
        None,
    ),
    ("workdir", "FROM busybox\nWORKDIR /w\nWORKDIR sub\nWORKDIR ../x\nRUN pwd > /pwd\n", {}, {}, None),
    (
        "workdir-env-copy",
        "FROM busybox\nENV D=/data\nWORKDIR $D/app\nCOPY f .\nCOPY f ./g\n",
        {"f": b"f\n"},
        {},
        None,
    ),
    (
        "user",
        "FROM busybox\n" + ADDUSER + "USER app\nRUN id -u > /tmp/uid && touch /tmp/owned\n",
        {},
        {},
        None,
    ),
    (
        "user-numeric",
        "FROM busybox\nUSER 1000:1000\nRUN touch /tmp/x\nUSER root\nRUN touch /tmp/y\n",
        {},
        {},
        None,
    ),
    (
        "copy-file",
        "FROM busybox\nCOPY a.txt /dst/\nCOPY a.txt /renamed.txt\nCOPY /a.txt ./b.txt /two/\n",
        {"a.txt": b"a\n", "b.txt": b"b\n"},
        {},
        None,
    ),
    (
        "copy-dir",
        "FROM busybox\nCOPY dir/ /d/\nCOPY dir /d2\nCOPY dir/sub /d3/\n",
        {"dir/x": b"x\n", "dir/sub/y": (b"y\n", 0o600), "dir/empty/": b""},
        {},
        None,
    ),
    (
        "copy-wildcard",
        "FROM busybox\nCOPY *.txt /many/\nCOPY d?r/*.c /src/\n",
        {"a.txt": b"a\n", "b.txt": b"b\n", "c.md": b"c\n", "dir/m.c": b"m\n", "dir/n.h": b"n\n"},
        {},
        None,
    ),
    (
        "copy-chown-chmod",
        "FROM busybox\n" + ADDUSER + "COPY --chown=1234:1234 a.txt /tmp/\n"
        "COPY --chown=app:app b.txt /tmp/\nCOPY --chmod=0755 s.sh /tmp/\n",
        {"a.txt": b"a\n", "b.txt": b"b\n", "s.sh": b"#!/bin/sh\n"},
        {},
        None,
    ),
    (
        "copy-modes-links",
        "FROM busybox\nCOPY tree/ /tree/\n",
        {
            "tree/run.sh": (b"#!/bin/sh\necho\n", 0o755),
            "tree/ro": (b"r\n", 0o444),
            "tree/l": ("link", "run.sh"),
            "tree/abs": ("link", "/etc/passwd"),
            "tree/sub/deep": b"d\n",
            "tree/none/": b"",
        },
        {},
        None,
    ),
    (
        "add-local",
        "FROM busybox\nADD a.txt /added.txt\nADD dir /added/\n",
        {"a.txt": b"a\n", "dir/x": b"x\n"},
        {},
        None,
    ),
    (
        "add-archives",
        "FROM busybox\nADD plain.tar /plain/\nADD packed.tgz /opt/\nCOPY packed.tgz /copied.tgz\n"
        "ADD not.tar /\n",
        {"plain.tar": archive(), "packed.tgz": archive("gz"), "not.tar": b"not a tar\n"},
        {},
        None,
    ),
    (
        "dockerignore",
        "FROM busybox\nCOPY . /ctx/\n",
        {
            ".dockerignore": b"# comment\n*.log\n!keep.log\nsecret/\n**/*.tmp\n/Dockerfile\n",
            "a.txt": b"a\n",
            "x.log": b"x\n",
            "keep.log": b"k\n",
            "secret/s": b"s\n",
            "d/e/f.tmp": b"t\n",
            "d/e/g": b"g\n",
        },
        {},
        None,
    ),
    (
        "config",
        'FROM busybox\nCMD ["sleep", "1"]\nEXPOSE 80 53/udp 8080/tcp\nLABEL a=b c="d e"\n'
        'VOLUME /v1 /v2\nVOLUME ["/v3"]\nSTOPSIGNAL SIGINT\n'
        'HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=4 CMD ["true"]\n',
        {},
        {},
        None,
    ),
    (
        "config-shell-forms",
        "FROM busybox\nENTRYPOINT echo entry\nHEALTHCHECK CMD wget -q localhost || exit 1\nUSER 1000\n",
        {},
        {},
        None,
    ),
    (
        "entrypoint-resets-cmd",
        'FROM busybox AS base\nCMD ["a"]\nFROM base\nENTRYPOINT ["/bin/echo"]\n',
        {},
        {},
        None,
    ),
    (
        "multistage-target",
        "FROM busybox AS a\nRUN echo a > /a\nFROM busybox AS b\nRUN echo b > /b\n"
        "FROM a AS c\nRUN echo c > /c\nFROM b\nRUN echo last > /last\n",
        {},
        {},
        "c",
    ),
    (
        "multistage-config",
        "FROM busybox AS a\nENV E=1\nWORKDIR /wa\nLABEL x=1\nFROM a\nENV F=$E-2\nRUN echo $F > f\n",
        {},
        {},
        None,
    ),
    (
        "copy-from-stage",
        "FROM busybox AS build\nWORKDIR /out/sub\nRUN echo built > f && ln -s f l && chmod 640 f && mkdir e\n"
        "RUN rm -rf /out/sub/e\nFROM busybox\nCOPY --from=build /out/ /app/\n"
        "COPY --from=build /out/sub/f /single\n"
        "COPY --from=0 out/sub /x/\nCOPY --from=build --chown=5:6 /out/sub/l /linkdir/\n",
        {},
        {},
        None,
    ),
    ("copy-from-image", "FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh /opt/\n", {}, {}, None),
    (
        "scratch",
        'FROM scratch\nCOPY tree/ /\nENV PATH=/bin\nCMD ["/x"]\n',
        {"tree/x": (b"x\n", 0o755), "tree/etc/conf": b"c\n"},
        {},
        None,
    ),
    ("escape-directive", '# escape=`\nFROM busybox\nENV A=x B="q"r\nRUN echo a `\n  b > /ab\n', {}, {}, None),
    (
        "lowercase",
        'from busybox as base\nenv A=1\nrun echo $A > /a\nfrom base\ncopy a.txt /\ncmd ["cat", "/a"]\n',
        {"a.txt": b"a\n"},
        {},
        None,
    ),
    (
        "expose-args",
        "FROM busybox\nARG P=8080\nEXPOSE $P/tcp ${P:-1}/udp\nENV PATH=/opt/bin:$PATH\n",
        {},
        {},
        None,
    ),
]


def write_context(ctx: Path, dockerfile: str, files: dict[str, Any]) -> None:
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, value in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif isinstance(value, tuple) and value[0] == "link":
            path.symlink_to(value[1])
        elif isinstance(value, tuple):
            path.write_bytes(value[0])
            path.chmod(value[1])
        else:
            path.write_bytes(value)
            path.chmod(0o644)


def tree(tar_path: Path) -> dict[str, tuple[object, ...]]:
    """Path -> (type, mode, uid, gid, link target, sha256) of a root filesystem tar."""
    out: dict[str, tuple[object, ...]] = {}
    with tarfile.open(tar_path) as tf:
        for m in tf.getmembers():
            name = m.name.lstrip("./").rstrip("/")
            if not name or name in NOISE:
                continue
            digest = None
            if m.isfile():
                fh = tf.extractfile(m)
                assert fh is not None
                digest = hashlib.sha256(fh.read()).hexdigest()
            kind = "file" if m.islnk() or m.isfile() else m.type
            out[name] = (kind, oct(m.mode & 0o7777), m.uid, m.gid, m.linkname if m.issym() else "", digest)
    return out


def mtimes_of(tar_path: Path, paths: tuple[str, ...]) -> dict[str, int]:
    """Path -> modification time of the ``paths`` in a root filesystem tar."""
    if not paths:
        return {}
    with tarfile.open(tar_path) as tf:
        return {name: int(m.mtime) for m in tf.getmembers() if (name := m.name.lstrip("./")) in paths}


def exported_config(engine: Engine, image_id: str) -> dict[str, Any]:
    """The container config pylxcore's export writes for the image (without
    writing the layers: an OCI export gzips them, seconds for a Debian)."""
    from pylxcore.transfer.imageconfig import oci_config

    record = engine.store.get_image_record(image_id)
    assert record is not None
    return dict(oci_config(engine.store, record, [], 0)["config"])


def normal_config(config: dict[str, Any]) -> dict[str, Any]:
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if k != BUILDAH_LABEL}
    health = config.get("Healthcheck")
    return {
        "Env": sorted(config.get("Env") or []),
        "Cmd": config.get("Cmd"),
        "Entrypoint": config.get("Entrypoint"),
        "WorkingDir": config.get("WorkingDir") or "/",
        # Docker and buildah write "root" after "USER root"; pylxcore's export leaves it out.
        "User": "" if config.get("User") in (None, "root") else config["User"],
        "ExposedPorts": sorted(config.get("ExposedPorts") or {}),
        "Volumes": sorted(config.get("Volumes") or {}),
        "Labels": labels,
        "StopSignal": config.get("StopSignal") or "",
        "Healthcheck": {k: v for k, v in health.items() if v} if health else None,
    }


class Peer:
    """podman on a store of its own, with pylxcore's busybox loaded as ``busybox``."""

    def __init__(self, top: Path) -> None:
        need_tools("podman", "runc")
        require_lxc()
        self.top = top
        self.engine = Engine(root=top / "pxroot")
        self.podman = Podman(top / "podman", Path(tempfile.mkdtemp(prefix="pxdf-", dir="/tmp")))
        self.load_base("busybox:latest", "busybox")

    def load_base(self, name: str, base: str) -> None:
        """Build the pylxcore base ``base`` as image ``name``, export it, load it into podman as ``name``."""
        self.engine.images.build(Image(name, base=base))
        safe = name.replace("/", "_").replace(":", "_")
        # (a docker-archive's layers are not gzipped: a Debian's export takes a third of the time)
        archive = self.engine.images.export(name, self.top / f"{safe}.tar", format="docker-archive")
        self.podman("load", "-i", str(archive))
        archive.unlink()

    def close(self) -> None:
        self.podman("rm", "--all", "--force", check=False)
        self.podman("rmi", "--all", "--force", check=False)
        self.engine.close()
        shutil.rmtree(self.podman.base, ignore_errors=True)
        shutil.rmtree(self.podman.runroot, ignore_errors=True)

    def build_both(
        self,
        case: str,
        dockerfile: str,
        files: dict[str, Any],
        build_args: dict[str, str] | None = None,
        target: str | None = None,
        *,
        network: str = "none",
        podman_args: tuple[str, ...] = (),
        noise: Callable[[str], bool] = lambda path: False,
        times: tuple[str, ...] = (),
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Build ``dockerfile`` (in a context of ``files``) as ``df/CASE:1`` with
        pylxcore and with podman; assert the root filesystems (but the paths
        ``noise`` names) and the configs match. Returns (ours, podman's)
        modification times of the paths ``times`` names."""
        build_args = build_args or {}
        ctx = self.top / case / "ctx"
        write_context(ctx, dockerfile, files)
        name = f"df/{case}:1"

        image = Image.from_dockerfile(
            ctx / "Dockerfile", build_args=build_args, target=target, name=name, engine=self.engine
        )
        built = self.engine.images.build(image)
        ours_tar = self.engine.images.export(name, self.top / case / "ours.tar", format="rootfs")
        ours_cfg = exported_config(self.engine, built.id)

        argv = ["build", "--format", "docker", "--network", network, "-t", name]
        argv += ["-f", str(ctx / "Dockerfile")]
        for key, value in build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        if target:
            argv += ["--target", target]
        self.podman(*argv, *podman_args, str(ctx))
        info = json.loads(self.podman("image", "inspect", name).stdout)[0]
        self.podman("create", "--name", case, name, "true")
        self.podman("export", "-o", str(self.top / case / "theirs.tar"), case)
        self.podman("rm", case)

        ours, theirs = tree(ours_tar), tree(self.top / case / "theirs.tar")
        diff = {
            p: (ours.get(p), theirs.get(p))
            for p in sorted(set(ours) | set(theirs))
            if ours.get(p) != theirs.get(p) and not noise(p)
        }
        assert diff == {}, f"root filesystems differ (ours, podman's): {diff}"
        mtimes = (mtimes_of(ours_tar, times), mtimes_of(self.top / case / "theirs.tar", times))
        shutil.rmtree(self.top / case)  # (kept when they differ) a Debian tree is a few hundred MB
        theirs_cfg = dict(info["Config"])
        theirs_cfg.setdefault("Healthcheck", info.get("Healthcheck"))  # where podman 4.3 keeps it
        assert normal_config(ours_cfg) == normal_config(theirs_cfg)
        return mtimes


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    p = Peer(tmp_path_factory.mktemp("dfdiff"))
    try:
        yield p
    finally:
        p.close()


@pytest.mark.parametrize(
    ("case", "dockerfile", "files", "build_args", "target"), CASES, ids=[c[0] for c in CASES]
)
def test_dockerfile_matches_podman(
    peer: Peer,
    case: str,
    dockerfile: str,
    files: dict[str, Any],
    build_args: dict[str, str],
    target: str | None,
) -> None:
    peer.build_both(case, dockerfile, files, build_args, target)
