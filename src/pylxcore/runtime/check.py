"""``Engine.check()``: find and repair what a killed process left half-done.

Every write in the store is a rename of something complete, so a crash can
leave only leftovers beside the state, never a half layer or half record:
staging dirs and temp files of dead processes, build containers whose builder
died, a container whose supervisor was killed, empty cgroups. This module
finds those and removes them. Work in progress of live processes is told
apart by the owner tag (pid and start time) in every temporary name.

It also closes a root that an older pylxcore left open to other host users
(dirs 0755, records 0644) the way a new root is made (see pylxcore.store).

It lives with the runtime, not the store, because most of what it repairs is
the runtime's: supervisors, lxc-execute processes and cgroups.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from pylxcore.errors import LXCError, StorageError
from pylxcore.runtime.cgroups import cgroup_name, cgroup_prefix, remove_cgroup, remove_cgroups
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.processes import container_names, kill_and_reap, lxc_processes
from pylxcore.runtime.rename import repair_names
from pylxcore.runtime.state import StateRecord
from pylxcore.store import Store, owner_alive, rmtree, strip_digest
from pylxcore.supervisor.state import STATE_FILE

if TYPE_CHECKING:
    from pylxcore.engine import Engine


@attrs.frozen
class CheckReport:
    """What ``Engine.check()`` found. ``consistent`` is true when nothing is
    wrong now (after the repairs); ``problems`` lists what it could not repair."""

    repaired: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.problems


def _lock_free(path: Path) -> bool:
    """Whether nobody holds the flock at ``path`` (a lock file that does not exist is free)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _state(d: Path) -> StateRecord | None:
    """The state of the container in dir ``d``; None when it has none, it
    cannot be read, or the container is gone (see StateRecord.read)."""
    try:
        return StateRecord.read(d / STATE_FILE)
    except (OSError, StorageError):
        return None  # (a newer schema: not ours to repair)


def _walls(store: Store) -> list[Path]:
    """What keeps other host users out of the store: the root, everything at
    its top, the image records, and each layer's dir and record. Never what is
    inside a layer's tree: those modes are the image's, and the dirs above
    them are the walls. (The containers' own dirs are pylxcore.runtime.provision's to make.)"""
    paths = [store.root, *store.root.iterdir(), *store.images_dir.glob("*.json")]
    for d in store.layers_dir.iterdir():
        if (d / "meta.json").exists():  # (else an incomplete layer: removed below)
            paths += [d, d / "meta.json"]
    return paths


def check(engine: Engine, *, repair: bool = True) -> CheckReport:
    """Find (and with ``repair``, repair) what killed processes left in
    ``engine``'s root, under its gc lock. Problems it cannot repair go into
    the report; they are not raised."""
    store = engine.store
    repaired: list[str] = []
    problems: list[str] = []

    def fix(what: str) -> None:
        if repair:
            repaired.append(what)
        else:
            problems.append(what)

    with store.lock("gc"):
        # -- walls: nobody but root may enter the store (SPEC.md section 7) -----
        for path in _walls(store):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # removed meanwhile
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode) or (st.st_uid == 0 and not mode & 0o077):
                continue
            # Root's alone: its owner may always chmod it open again.
            changes = [f"owner uid {st.st_uid} -> 0"] if st.st_uid != 0 else []
            if mode & 0o077:
                changes.append(f"mode {mode:04o} -> {mode & 0o700:04o}")
            name = "the store root" if path == store.root else str(path.relative_to(store.root))
            if repair:
                try:
                    if st.st_uid != 0:
                        os.lchown(path, 0, 0)
                    os.chmod(path, mode & 0o700)
                except OSError as err:
                    problems.append(f"cannot close {name} to other host users: {err}")
                    continue
            fix(f"closed {name} to other host users ({', '.join(changes)})")

        # -- build containers and staging dirs of dead processes ---------------
        def orphaned_builds() -> list[int]:
            return [
                pid
                for pid, argv in lxc_processes(store.tmp_dir)
                if not owner_alive(Path(argv[argv.index("-P") + 1]).name)
            ]

        orphans = orphaned_builds()
        for pid in orphans:
            fix(f"killed the build container of a dead builder (pid {pid})")
        # Until it execs, a child liblxc forks carries lxc-execute's command
        # line too, and a loaded machine may take seconds to end them all:
        # kill and look again until none is left.
        deadline = time.monotonic() + 30
        while repair and orphans and time.monotonic() < deadline:
            for pid in orphans:
                kill_and_reap(pid)
            orphans = orphaned_builds()
        for entry in sorted(store.tmp_dir.iterdir()):
            if not owner_alive(entry.name):
                fix(f"removed leftover staging dir tmp/{entry.name}")
                if repair:
                    # A build script outlives its killed lxc-execute and would
                    # go on writing into the dir as we remove it: end it first.
                    for build in entry.glob("pxb-*"):
                        remove_cgroups(cgroup_name(store.root_id, build.name))
                    rmtree(entry)

        # -- layers and their short links ---------------------------------------
        keys = set()
        for d in store.layers_dir.iterdir():
            if not (d / "meta.json").exists():
                fix(f"removed incomplete layer dir layers/{d.name}")
                if repair:
                    rmtree(d)
                continue
            keys.add(f"sha256:{d.name}")
        for link in store.links_dir.iterdir():
            if link.name.startswith("."):
                if not owner_alive(link.name):
                    fix(f"removed temporary link l/{link.name}")
                    if repair:
                        link.unlink()
            elif not link.exists():
                fix(f"removed dangling link l/{link.name}")
                if repair:
                    link.unlink()
        for key in keys:
            link = Path(store.short_path(key))
            if not os.path.lexists(link):
                fix(f"restored link l/{link.name}")
                if repair:
                    os.symlink(f"../layers/{strip_digest(key)}/fs", link)

        # -- image records and refs ------------------------------------------------
        for path in (store.images_dir, store.root):
            for tmp in path.glob(".tmp-*"):
                if not owner_alive(tmp.name):
                    fix(f"removed temporary file {tmp.relative_to(store.root)}")
                    if repair:
                        tmp.unlink()
        records = {}
        for image_id in store.image_ids():
            try:
                record = store.get_image_record(image_id)
            except Exception as err:  # noqa: BLE001  (report every broken record, go on)
                problems.append(f"image record {image_id} is unreadable: {err}")
                continue
            if record is None:
                continue
            records[image_id] = record
            missing = [k for k in record.layers if k not in keys]
            if missing:
                problems.append(f"image {image_id} lacks layers {missing}")
        with store.lock("refs"):
            refs = store.read_refs()
            dangling = [name for name, image_id in refs.items() if image_id not in records]
            for name in dangling:
                fix(f"removed tag {name} of a missing image")
            if dangling and repair:
                store.write_refs({n: i for n, i in refs.items() if n not in dangling})

        # -- containers --------------------------------------------------------------
        live = container_names(lxc_processes(store.containers_dir))
        for d in store.containers_dir.iterdir():
            name = d.name
            if not d.is_dir():
                continue
            for tmp in d.glob("*.tmp"):
                parts = tmp.name.split(".")
                if len(parts) >= 3 and parts[-2].isdigit() and not os.path.exists(f"/proc/{parts[-2]}"):
                    fix(f"removed temporary file containers/{name}/{tmp.name}")
                    if repair:
                        tmp.unlink()
            if not (d / "meta.json").exists():
                if _lock_free(store.locks_dir / f"ctr-{name}.lock"):
                    fix(f"removed half-created container dir containers/{name}")
                    if repair:
                        rmtree(d)
                continue
            state = _state(d)
            shim_alive = state is not None and state.supervisor_alive()
            if state and state.status == "running" and not shim_alive:
                # It may have written its last word and exited since we read.
                state = _state(d)
            if state and state.status == "running" and not shim_alive:
                if name in live:
                    fix(f"killed container {name}: its supervisor had died, its output had nowhere to go")
                    if repair:
                        for pid, argv in lxc_processes(store.containers_dir):
                            if "-n" in argv and argv[argv.index("-n") + 1] == name:
                                kill_and_reap(pid)
                fix(f"marked container {name} exited (exit code unknown: its supervisor was killed)")
                if repair:
                    exited = attrs.evolve(state, status="exited", exit_code=None, finished_at=time.time())
                    exited.write(d / STATE_FILE)

        # -- names: the index, and DNS names a crashed rename left (see pylxcore.runtime.names)
        repair_names(store, fix, repair=repair)

        # -- networks: addresses, rules, links and names of what is gone -----------
        if (store.root / "networks").is_dir():
            try:
                engine.networks.repair(fix, repair=repair)
            except LXCError as err:
                problems.append(f"cannot repair networks: {err}")

        # -- cgroups no container uses -------------------------------------------------
        # Candidates first, users after: a container that starts in between
        # then counts as a user, never as a leftover whose processes we kill.
        prefix = cgroup_prefix(store.root_id)
        candidates = []
        for base in host_layout().all_dirs:
            try:
                candidates += [Path(base) / e for e in os.listdir(base) if e.startswith(prefix)]
            except OSError:
                continue
        in_use = _cgroup_users(store)
        for path in candidates:
            owner = path.name[len(prefix) :]
            if owner.endswith(".monitor"):
                owner = owner[: -len(".monitor")]
            if owner in in_use:
                continue
            if not repair:
                problems.append(f"leftover cgroup {path}")
            elif remove_cgroup(path):
                repaired.append(f"removed leftover cgroup {path}")
    return CheckReport(tuple(repaired), tuple(problems))


def _cgroup_users(store: Store) -> set[str]:
    """Names whose cgroups are in use: containers with a live supervisor or a
    live lxc-execute, and build containers whose builder is alive."""
    users = container_names(lxc_processes(store.containers_dir))
    users |= container_names(lxc_processes(store.tmp_dir))
    for d in store.containers_dir.iterdir():
        state = _state(d)
        if state is not None and state.supervisor_alive():
            users.add(d.name)
    for staged in store.tmp_dir.iterdir():
        if owner_alive(staged.name):
            users.update(p.name for p in staged.glob("pxb-*"))
    return users
