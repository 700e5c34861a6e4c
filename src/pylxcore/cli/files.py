"""The commands on a container's files: cp, diff, commit, top, and export (a container's or an image's)."""

from __future__ import annotations

import argparse
import io
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from pylxcore.cli.output import EXIT_OK, EXIT_USAGE, table, write_bytes
from pylxcore.engine import Engine
from pylxcore.errors import NotFound, SpecError, StorageError
from pylxcore.runtime.archive import copy_into, export, get_archive, put_archive
from pylxcore.runtime.container import Container

_GO_DIR = 1 << 31


def split_target(text: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` as (container, path); a local path as (None, path).
    As docker: a path with a slash before its first colon is local."""
    if text == "-" or text.startswith(("/", ".")):
        return None, text
    name, colon, path = text.partition(":")
    if not colon or "/" in name:
        return None, text
    return name, path or "/"


def _admit(keep_owner: bool) -> Any:
    """A tarfile filter for a tar from a container: tarfile's "tar" filter
    (no member, nor what an earlier symlink member leads to, lands outside
    the destination) keeping modes; owners ours unless ``keep_owner``."""

    def admit(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        checked = tarfile.tar_filter(member, dest)
        uid, gid = (member.uid, member.gid) if keep_owner else (os.getuid(), os.getgid())
        return checked.replace(mode=member.mode, uid=uid, gid=gid, deep=False)

    return admit


def _copy_out(ctr: Container, src: str, dest: str, archive: bool, follow_link: bool) -> None:
    """``cp CTR:SRC DEST``: as docker, into DEST when it is a directory, as DEST when it is not there."""
    stream, stat = get_archive(ctr, src, follow_link=follow_link)
    if dest == "-":
        out = sys.stdout.buffer
        for chunk in stream:
            out.write(chunk)
        out.flush()
        return
    target = Path(dest)
    is_dir_src = bool(stat["mode"] & _GO_DIR)
    contents = src.endswith("/.")
    if target.is_dir() and not contents:
        where, rename = target, None
    elif contents:
        target.mkdir(exist_ok=True)
        where, rename = target, None
    else:
        if dest.endswith("/") and not target.exists():
            raise NotFound(f"destination directory {dest!r} does not exist", name=dest)
        if not target.parent.is_dir():
            raise NotFound(f"destination directory {str(target.parent)!r} does not exist", name=dest)
        if target.exists() and is_dir_src and not target.is_dir():
            raise SpecError(f"cannot copy a directory onto the file {dest!r}", key="dest")
        where, rename = Path(tempfile.mkdtemp(prefix=".pxcp-", dir=target.parent)), target
    try:
        with tarfile.open(fileobj=_Chunks(stream), mode="r|") as tar:  # type: ignore[call-overload]
            tar.extractall(where, numeric_owner=True, filter=_admit(archive))
        if rename is not None:
            made = where / stat["name"]
            if rename.is_dir() and not rename.is_symlink() and made.is_dir():
                shutil.rmtree(rename)
            os.replace(made, rename)
    finally:
        if rename is not None:
            shutil.rmtree(where, ignore_errors=True)


class _Chunks:
    """A file-like reader over an iterator of bytes chunks (for tarfile's
    stream mode, which reads 10 kB at a time: each read copies only what it
    returns, not the rest of the chunk)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._buf = b""
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) - self._pos < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf = self._buf[self._pos:] + chunk
            self._pos = 0
        end = len(self._buf) if size < 0 else self._pos + size
        data = self._buf[self._pos:end]
        self._pos += len(data)
        return data


def _copy_in(ctr: Container, src: str, dest: str, archive: bool, follow_link: bool) -> None:
    """``cp SRC CTR:DEST``: into DEST when it is a directory in the
    container, as DEST when it is not there."""
    if src == "-":
        put_archive(ctr, dest, sys.stdin.buffer)
        return
    source = Path(os.path.realpath(src) if follow_link else src)
    if not os.path.lexists(source):
        raise NotFound(f"no such file or directory {src!r}", name=src)
    contents = src.endswith("/.")

    def decide(st: dict[str, Any] | None) -> tuple[str, Callable[[IO[bytes]], None]]:
        # (given the stat of DEST in the container, by the helper that then unpacks)
        if st is not None and st["mode"] & _GO_DIR:
            where, name = dest, "." if contents else Path(src.rstrip("/")).name or source.name
        else:
            if dest.endswith("/"):
                raise NotFound(f"no directory {dest!r} in container {ctr.name!r}", name=dest)
            if st is not None and source.is_dir():
                raise SpecError(f"cannot copy a directory onto the file {dest!r} in the container",
                                key="dest")
            where = posixpath.dirname(posixpath.normpath("/" + dest.lstrip("/")))
            name = posixpath.basename(dest.rstrip("/"))
        return where, lambda out: write_tar(out, str(source), name, keep_owner=archive)

    copy_into(ctr, dest, decide)


def write_tar(out: IO[bytes], source: str, arcname: str, *, keep_owner: bool) -> None:
    """``source`` (a file, link or directory tree, not followed) as a tar
    stream on ``out``, named ``arcname``, owners root's unless
    ``keep_owner``, as ``tarfile``'s ``add`` writes it; but a file's bytes
    go from its file to ``out`` by sendfile(2), never through Python (``cp``
    of 100 MB in). Raises OSError (a file that cannot be read), StorageError
    (one that shrank while it was copied)."""
    headers = tarfile.TarFile(fileobj=io.BytesIO(), mode="w")  # (for gettarinfo: stat and hard links)
    fd = out.fileno()

    def member(path: str, name: str) -> None:
        info = headers.gettarinfo(path, name)
        if info is None:
            return  # a socket: tar has no such member (tarfile skips them too)
        if not keep_owner:
            info.uid = info.gid = 0
        info.uname = info.gname = ""
        out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.isreg():
            out.flush()
            with open(path, "rb") as fh:
                sent = 0
                while sent < info.size:
                    n = os.sendfile(fd, fh.fileno(), sent, info.size - sent)
                    if n == 0:
                        raise StorageError(f"{path!r} shrank while it was copied", path=path)
                    sent += n
            out.write(b"\0" * (-info.size % tarfile.BLOCKSIZE))
        elif info.isdir():
            for child in sorted(os.listdir(path)):
                member(os.path.join(path, child), f"{name}/{child}")

    member(source, arcname)
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))  # the end of the archive
    out.flush()


def cmd_cp(args: argparse.Namespace) -> int:
    """``cp CTR:SRC DEST`` or ``cp SRC CTR:DEST`` (``-``: a tar on stdout or stdin)."""
    src_ctr, src = split_target(args.src)
    dest_ctr, dest = split_target(args.dest)
    if (src_ctr is None) == (dest_ctr is None):
        print("pylxcore: error: cp copies between a container and here: give one of SRC and DEST as"
              " CONTAINER:PATH", file=sys.stderr)
        return EXIT_USAGE
    engine = Engine(root=args.root)
    if src_ctr is not None:
        _copy_out(engine.containers.get(src_ctr), src, dest, args.archive, args.follow_link)
    else:
        assert dest_ctr is not None
        _copy_in(engine.containers.get(dest_ctr), src, dest, args.archive, args.follow_link)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    """``diff NAME``: what the container changed, one ``A|C|D PATH`` a line."""
    for change in Engine(root=args.root).containers.get(args.name).diff():
        print(f"{change.kind} {change.path}")
    return EXIT_OK


def cmd_commit(args: argparse.Namespace) -> int:
    """``commit NAME [REPO[:TAG]]``: the container as a new image; prints its id."""
    ctr = Engine(root=args.root).containers.get(args.name)
    image = ctr.commit(args.repository, None, message=args.message, author=args.author,
                       changes=args.change, pause=args.pause)
    print(image.id)
    return EXIT_OK


def cmd_top(args: argparse.Namespace) -> int:
    """``top NAME [PS OPTIONS]``: the container's processes."""
    result = Engine(root=args.root).containers.get(args.name).top(" ".join(args.ps_args) or "-ef")
    print(table(result["Titles"], result["Processes"]))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """``export NAME [-o FILE]``: a container's filesystem as a tar (docker
    export); with ``--format``, an image for another engine."""
    if args.format is not None:
        print(f"pylxcore: warning: export IMAGE --format is deprecated: use save --format {args.format}"
              " -o PATH (export is a container's files, as docker export)", file=sys.stderr)
        if args.output is None:
            raise SpecError("exporting an image (--format) needs -o PATH", key="output")
        from pylxcore.cli.images import cmd_export as export_image

        return export_image(args)
    stream = export(Engine(root=args.root).containers.get(args.image))
    if args.output in (None, "-"):
        if sys.stdout.isatty():
            raise SpecError("refusing to write a tar to a terminal: give -o FILE or redirect", key="output")
        for chunk in stream:
            write_bytes(sys.stdout, chunk)
        return EXIT_OK
    tmp = f"{args.output}.part"
    fh: IO[bytes]
    with open(tmp, "wb") as fh:
        for chunk in stream:
            fh.write(chunk)
    os.replace(tmp, args.output)
    return EXIT_OK
