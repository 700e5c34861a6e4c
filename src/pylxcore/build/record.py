"""The build record: its format on disk, its place in the store, and its replay.

A new ``pylxcore`` process pays ~75 ms to import the library before it can
see that a build has nothing to do. So after a ``pylxcore build`` whose every
step was cached, the command line leaves a record in the store: the facts the
library read to decide the cache (each file, directory, symlink, path
resolution and image ref exactly as the library saw it) and the text the
command printed. The next identical command line (same arguments, folder and
``$PYLXCORE_ROOT``) replays it: when every fact still holds it prints that
text and exits; anything else (a fact that no longer holds, a missing or
unreadable record, another schema) runs the real build. The replay knows no
cache rule and formats nothing: it compares recorded facts and prints recorded
text. The library writes records (build/recorder.py); this module only
defines them, so it imports nothing but the standard library, and the
command line can load it alone (the package ``pylxcore.build`` is empty).
"""

from __future__ import annotations

import json
import os
import sys

# Not typing.TYPE_CHECKING: importing typing costs a replay more than its checks.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import IO, Any, TypedDict

    # One thing a build read: {"kind": "stat" | "exists" | "realpath" | "ref", "path": ..., ...}.
    Fact = dict[str, Any]

    class Invocation(TypedDict):
        """The command line a record answers."""

        argv: list[str]
        cwd: str
        root_env: str | None

    class Document(TypedDict):
        """A record on disk, as JSON (typed for the checker only: a replay loads no typing)."""

        schema: int
        invocation: Invocation
        root: str
        image_id: str
        facts: list[Fact]
        stdout: str

SCHEMA = 1
# Where records live under a store root; prune removes the folder.
RECORDS = os.path.join("cache", "build-records")
# Set to "0" to never replay (records are still written): the differential
# test runs the real path this way, and so can anyone who suspects a record.
REPLAY_ENV = "PYLXCORE_BUILD_REPLAY"
ROOT_ENV = "PYLXCORE_ROOT"
# The library's default root (pylxcore.engine.DEFAULT_ROOT, which a test holds
# equal): only where a replay looks, so a difference could only cost a miss.
DEFAULT_ROOT = "/var/lib/pylxcore"
# A stat vouches for a file's content only once the file has been left alone
# this long: a write within the same timestamp tick as the stat could change
# the bytes and leave size, mtime and ctime as they were (git's "racy" files).
RACY_NS = 2_000_000_000


# -- the invocation a record answers, and where it lives ----------------------------


def invocation(argv: Sequence[str], environ: Mapping[str, str], cwd: str) -> Invocation:
    """What a record is for: the exact command line, the folder it ran in and
    the one variable that can change which store it uses. Nothing is parsed."""
    return {"argv": list(argv), "cwd": cwd, "root_env": environ.get(ROOT_ENV)}


def store_hint(argv: Sequence[str], environ: Mapping[str, str], cwd: str) -> str:
    """The store a command line most likely uses: where its record is looked for.

    Only a place to look: a record is written there only by a command line
    whose store was that very folder (the recorder checks), and holds the
    invocation it answers, so a wrong guess can only miss.
    """
    root = None
    for i, arg in enumerate(argv):
        if arg == "--root" and i + 1 < len(argv):
            root = argv[i + 1]
        elif arg.startswith("--root="):
            root = arg[len("--root=") :]
    return os.path.join(cwd, root or environ.get(ROOT_ENV) or DEFAULT_ROOT)


def record_file(root: str, inv: Invocation) -> str:
    """The record of invocation ``inv`` in the store ``root``."""
    import zlib  # (only the record's name needs it)

    # A short name is enough: the record holds the whole invocation and is
    # only used when it matches, so a collision costs a miss, never a wrong answer.
    text = json.dumps([inv["argv"], inv["cwd"], inv["root_env"]])
    name = f"{zlib.crc32(text.encode('utf-8', 'surrogateescape')):08x}.json"
    return os.path.join(root, RECORDS, name)


# -- facts: what a build read, as it read it ---------------------------------------------


def stat_id(st: os.stat_result) -> list[int]:
    """The identity a stat gives a file: any write, chmod, rename over or
    replacement changes one of these (the ctime, at least)."""
    return [st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def settled(st: os.stat_result, now_ns: int) -> bool:
    """Whether ``st`` (taken at ``now_ns``, time.time_ns()) vouches for the
    content: the file had been left alone for RACY_NS already."""
    return now_ns - st.st_ctime_ns > RACY_NS


def stat_fact(
    path: str,
    st: os.stat_result,
    *,
    follow: bool,
    sha256: str | None = None,
    names: Sequence[str] | None = None,
    target: str | None = None,
) -> Fact:
    """``path`` had the stat ``st`` (``os.stat`` when ``follow``, else ``os.lstat``);
    and, when given, the content ``sha256`` (a file), the sorted ``names`` in it
    (a directory) or the ``target`` (a symlink)."""
    fact: Fact = {"kind": "stat", "path": path, "follow": follow, "id": stat_id(st)}
    if sha256 is not None:
        fact["sha256"] = sha256
    if names is not None:
        fact["names"] = list(names)
    if target is not None:
        fact["target"] = target
    return fact


def exists_fact(path: str, exists: bool) -> Fact:
    """``os.path.exists(path)`` (a symlink followed) was ``exists``."""
    return {"kind": "exists", "path": path, "value": exists}


def realpath_fact(path: str, real: str) -> Fact:
    """``os.path.realpath(path)`` was ``real``: which symlinks a path went through."""
    return {"kind": "realpath", "path": path, "value": real}


def ref_fact(refs_file: str, name: str, image_id: str) -> Fact:
    """In the JSON object ``refs_file`` (a store's refs), ``name`` named ``image_id``."""
    return {"kind": "ref", "path": refs_file, "name": name, "value": image_id}


def _sha256_of(path: str, follow: bool) -> str:
    import hashlib  # (deferred: only a racy file needs it, and it costs ~3 ms)

    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def holds(fact: Fact, json_files: dict[str, Any]) -> bool:
    """Whether ``fact`` is still true. ``json_files`` caches the JSON files read
    for ``ref`` facts. OSError (a path gone, say) propagates: the caller treats
    it as False."""
    kind, path = fact["kind"], fact["path"]
    if kind == "stat":
        st = os.stat(path) if fact["follow"] else os.lstat(path)
        if stat_id(st) != fact["id"]:
            return False
        if "target" in fact and os.readlink(path) != fact["target"]:
            return False
        if "names" in fact and sorted(os.listdir(path)) != fact["names"]:
            return False
        return "sha256" not in fact or _sha256_of(path, fact["follow"]) == fact["sha256"]
    if kind == "exists":
        return os.path.exists(path) is fact["value"]
    if kind == "realpath":
        return bool(os.path.realpath(path) == fact["value"])
    if kind == "ref":
        # A store's refs.json maps each name to its image id at the top level
        # (beside its "schema": see pylxcore.store.records.Refs).
        if path not in json_files:
            with open(path, "rb") as fh:
                json_files[path] = json.load(fh)
        return bool(json_files[path].get(fact["name"]) == fact["value"])
    return False  # a kind this version does not know: not a fact it can vouch for


# -- the record ------------------------------------------------------------------------------


def document(
    *, invocation: Invocation, root: str, image_id: str, facts: Sequence[Fact], stdout: str
) -> Document:
    """A record as written to disk (JSON): the invocation it answers, the store
    and image it made (for people reading it), the facts to check, the output."""
    return {
        "schema": SCHEMA,
        "invocation": invocation,
        "root": root,
        "image_id": image_id,
        "facts": list(facts),
        "stdout": stdout,
    }


def dumps(record: Document) -> str:
    """A record's text on disk (the recorder writes it; ``load`` reads it back)."""
    return json.dumps(record)


def load(path: str) -> Document | None:
    """The record at ``path``; None when there is none, it cannot be read, or
    it has another schema (a record is a shortcut: the real build runs then)."""
    try:
        with open(path, "rb") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        return None
    doc: Document = record  # type: ignore[assignment]  # (its fields are checked as replay uses them)
    return doc


# -- the replay ------------------------------------------------------------------------------


def replay(
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    out: IO[str] | None = None,
) -> int | None:
    """Answer the command line ``argv`` from its record: when every recorded fact
    still holds, print the recorded output to ``out`` (stdout) and return 0.
    None when the real command must run (no record, a changed fact, any doubt)."""
    environ = os.environ if environ is None else environ
    if environ.get(REPLAY_ENV) == "0":
        return None
    try:
        cwd = os.getcwd() if cwd is None else cwd
        inv = invocation(argv, environ, cwd)
        record = load(record_file(store_hint(argv, environ, cwd), inv))
        if record is None or record.get("invocation") != inv:
            return None
        json_files: dict[str, Any] = {}
        for fact in record["facts"]:
            if not holds(fact, json_files):
                return None
        text = record["stdout"]
        if not isinstance(text, str):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    stream = sys.stdout if out is None else out
    stream.write(text)
    stream.flush()
    return 0


__all__ = [
    "SCHEMA",
    "RECORDS",
    "REPLAY_ENV",
    "DEFAULT_ROOT",
    "RACY_NS",
    "document",
    "dumps",
    "load",
    "invocation",
    "store_hint",
    "record_file",
    "stat_id",
    "settled",
    "stat_fact",
    "exists_fact",
    "realpath_fact",
    "ref_fact",
    "holds",
    "replay",
]
