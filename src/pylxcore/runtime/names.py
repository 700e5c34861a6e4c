"""Container names and keys: which container a name means.

A container's key is fixed at creation: its directory ``containers/KEY``,
its liblxc name, its cgroups, its lock (``ctr-KEY``) and its place in the
network records. Its name (in its record) is what users see and look it up
by, and ``rename`` changes it. A new container's key is its name when
``containers/NAME`` is free, else ``NAME-<8 hex digits>`` (a name freed by a
rename is used again while the renamed container keeps its directory).

A name is found in one of two ways, in this order:

- ``containers/NAME/meta.json`` whose record's name is NAME (the key is the
  name: most containers, and every container of an older store);
- else the index entry ``names/NAME``, a symlink to the key, written
  (atomically) only for a container whose key is not its name.

An entry counts only when the record it leads to has that name: an entry
left by a rename that crashed halfway, or by a removed container, is stale
and means nothing (``Engine.check`` removes it). So the record is the
truth, and rename changes the name by one atomic write of it.

Who changes a name holds the name's lock (``name-NAME``, see ``claim`` in
pylxcore.runtime.containers): two creates, or a create and a rename, never
take the same name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from pylxcore.errors import Conflict, StorageError
from pylxcore.spec import validate_container_name
from pylxcore.store import Store, make_private_dir
from pylxcore.store.records import ContainerRecord

INDEX_DIR = "names"


def index_dir(store: Store) -> Path:
    """The name index of ``store`` (made on first use)."""
    d = store.root / INDEX_DIR
    if not d.is_dir():
        make_private_dir(d)
    return d


def new_key(store: Store, name: str) -> str:
    """The key a new container named ``name`` gets: the name when its
    directory is free, else the name and a random suffix (a valid name too,
    at most 57 characters)."""
    if not os.path.lexists(store.containers_dir / name):
        return name
    return f"{name[:48]}-{os.urandom(4).hex()}"


@contextlib.contextmanager
def claim(store: Store, name: str, claims: dict[str, str]) -> Iterator[str]:
    """Hold the name ``name`` for a new container, and the lock of the key it
    gets (``ctr-KEY``, yielded), until the end of the block: another create,
    or a rename to that name, waits, then finds it taken. ``claims``: those
    this caller holds (name to key); a nested claim of one of them shares it.
    Raises Conflict (taken), SpecError (a bad name)."""
    validate_container_name(name)  # before its lock file is named after it
    if name in claims:
        yield claims[name]
        return
    with store.lock(f"name-{name}"):
        try:
            if find(store, name) is not None:
                raise Conflict(f"a container named {name!r} already exists", name=name)
            key = new_key(store, name)
            with store.lock(f"ctr-{key}"):
                claims[name] = key
                try:
                    yield key
                finally:
                    del claims[name]
        finally:
            store.drop_lock(f"name-{name}")  # we hold it (see Store.lock): no file left behind


def record_of(store: Store, key: str) -> ContainerRecord | None:
    """The record of the container whose key is ``key``; None when there is
    none. Raises StorageError (unreadable)."""
    try:
        return ContainerRecord.read(store.containers_dir / key / "meta.json")
    except (FileNotFoundError, NotADirectoryError):
        return None


def find(store: Store, name: str) -> ContainerRecord | None:
    """The record of the container named ``name`` (a valid container name),
    None when there is none. Raises StorageError (its record is unreadable)."""
    try:
        direct = record_of(store, name)
    except StorageError:
        direct = None  # (the key's record is unreadable: only that key can say, see below)
        if not os.path.lexists(store.root / INDEX_DIR / name):
            raise
    if direct is not None and direct.name == name:
        return direct
    key = indexed(store, name)
    if key is None:
        return None
    found = record_of(store, key)
    return found if found is not None and found.name == name else None


def indexed(store: Store, name: str) -> str | None:
    """The key that the index entry of ``name`` leads to (stale or not); None without one."""
    try:
        key = os.readlink(store.root / INDEX_DIR / name)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None
    return key if key and "/" not in key and key not in (".", "..") else None


def point(store: Store, name: str, key: str) -> None:
    """Make ``name``'s index entry lead to ``key`` (nothing when the key is
    the name: such a container is found by its directory). Atomic: a crash
    leaves the old entry or the new one."""
    if name == key:
        return
    d = index_dir(store)
    tmp = d / f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(key, tmp)
    os.rename(tmp, d / name)


def unpoint(store: Store, name: str, key: str) -> None:
    """Remove ``name``'s index entry if it leads to ``key``."""
    if indexed(store, name) == key:
        with contextlib.suppress(FileNotFoundError):
            (store.root / INDEX_DIR / name).unlink()


def entries(store: Store) -> dict[str, str]:
    """Every index entry: name to key (stale ones too; temporary ones not)."""
    d = store.root / INDEX_DIR
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        key = indexed(store, p.name)
        if key is not None and not p.name.startswith("."):
            out[p.name] = key
    return out


__all__ = [
    "claim", "entries", "find", "index_dir", "indexed", "new_key", "point", "record_of",
    "unpoint",
]
