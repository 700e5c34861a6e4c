"""Making a container from an image: its dir, writable layer, liblxc config and record (meta.json).

A container is a directory ``ROOT/containers/KEY`` (an LXC lxcpath entry, so
``lxc-ls -P ROOT/containers`` lists it; KEY is its name at creation, which a
rename does not change: see pylxcore.runtime.names) holding:

    config      the liblxc config (rootfs = overlay of the image's layers + upper/)
    meta.json   what it was created with (image, command, env, limits, …)
    upper/      its writable layer (work/ beside it is overlayfs's)
    run.spec    what the supervisor runs
    state.json  written by the supervisor: running / exited, exit code, OOM
    log         stdout and stderr records with timestamps (see pylxcore.runtime.logs);
    log.1, …    the older ones, rotated (see pylxcore.supervisor.logfile)
    lxc.log     liblxc's errors of the last start
    reserve     disk space the supervisor holds back for its last words

This module makes the first three; the supervisor, which outlives the
Python process that started the container, writes the rest.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import attrs

from pylxcore.errors import Conflict, ImageNotFound, SpecError
from pylxcore.runtime.cgroups import cgroup_name
from pylxcore.runtime.limits import host_layout
from pylxcore.runtime.lxcconfig import SECCOMP_PROFILE, RunConfig, render
from pylxcore.runtime.programs import Command, command_argv
from pylxcore.runtime.rootfs import LayerStack, make_target, overlay_spec
from pylxcore.runtime.signals import signal_number
from pylxcore.runtime.userns import subordinate_ids
from pylxcore.runtime.users import lookup_user
from pylxcore.spec import Limits, Mount, parse_size, validate, validate_container_name
from pylxcore.spec.healthcheck import Healthcheck
from pylxcore.store import Store, atomic_write, canonical_json, rmtree
from pylxcore.store.records import ContainerRecord, ImageRecord
from pylxcore.supervisor.mounts import USERNS_ROOTFS
from pylxcore.supervisor.runspec import UsernsSpec

if TYPE_CHECKING:
    from pylxcore.network.attachment import Attachment

# The default cap of a container's log: Docker's recommended json-file
# options (max-size 10m, max-file 3). At most ~30 MB a container on disk, and
# the last 10 MB or more (tens of thousands of lines) always at hand.
DEFAULT_LOG_MAX_SIZE = 10 << 20
DEFAULT_LOG_MAX_FILES = 3
# At most this many log files: each rotation renames them all.
MAX_LOG_FILES = 100


def log_options(max_size: int | str | None, max_files: int) -> dict[str, int]:
    """The meta.json fields of a log cap: ``log_max_size`` in bytes (-1: no cap)
    and ``log_max_files``. Raises SpecError for a bad size or number of files."""
    if max_size is None:
        size = DEFAULT_LOG_MAX_SIZE
    elif max_size in (-1, "-1") and not isinstance(max_size, bool):
        size = -1
    else:
        size = parse_size(max_size, key="log_max_size")
    if isinstance(max_files, bool) or not isinstance(max_files, int) or not 1 <= max_files <= MAX_LOG_FILES:
        raise SpecError(
            f"expected a number of files from 1 to {MAX_LOG_FILES}, got {max_files!r}", key="log_max_files"
        )
    return {"log_max_size": size, "log_max_files": max_files}


def provision(
    store: Store,
    record: ImageRecord,
    image: str,
    command: Command,
    *,
    entrypoint: Command = None,
    name: str,
    key: str | None = None,
    env: Mapping[str, str] | None,
    workdir: str | None,
    user: str | None,
    limits: Limits | None,
    mounts: Sequence[Mount],
    network: str,
    labels: Mapping[str, str] | None,
    userns: bool,
    log_max_size: int | str | None,
    log_max_files: int,
    restart: str | None = None,
    healthcheck: Healthcheck | None = None,
    attachment: Attachment | None = None,
    tty: bool = False,
    stdin: bool = False,
    stop_signal: str | None = None,
    stop_timeout: float | None = None,
    read_only: bool = False,
    tmpfs: Mapping[str, str] | None = None,
    console_size: tuple[int, int] | None = None,
) -> None:
    """Make container ``name`` of ``store`` from ``image`` (``record``: its
    image record), under key ``key`` (default: the name; see
    pylxcore.runtime.names), not started: an overlay of the image's layers plus an
    empty writable layer (no copy), or with ``userns`` the dirs its
    supervisor mounts idmapped layers on. See ContainerCollection.create for
    the options; ``attachment``: its place on the library's networks
    (pylxcore.network), when ``network`` names one. Nothing is left of it when it raises: ImageNotFound (the
    image was removed meanwhile), Conflict (name taken), SpecError (bad name,
    command, env, mount, user or log option), LimitError (a limit the host
    cannot enforce), LXCError (``userns`` on a host with no subordinate ids
    for root), TypeError (an option of the wrong type)."""
    cfg = record.config
    validate_container_name(name)
    key = validate_container_name(key if key is not None else name)
    argv = command_argv(command, cfg, entrypoint=entrypoint)
    merged_env = validate.env({**(cfg.get("env") or {}), **validate.env(env)})
    if tty:
        merged_env.setdefault("TERM", "xterm")  # (Docker's, under the image's and the caller's)
    if network not in ("none", "host") and attachment is None:
        raise SpecError(f"network must be 'none', 'host' or a network's name, not {network!r}", key="network")
    if not isinstance(userns, bool):
        raise TypeError(f"userns must be True, False or None, not {userns!r}")
    if not isinstance(tty, bool) or not isinstance(stdin, bool) or not isinstance(read_only, bool):
        raise TypeError(f"tty, stdin and read_only must be True or False: {tty!r}, {stdin!r}, {read_only!r}")
    tmpfs = validate.tmpfs(tmpfs)
    size = validate.console_size(console_size)
    ids = subordinate_ids() if userns else None
    labels = validate.labels(labels)
    restart = validate.restart_policy(restart)
    stop = _stop_options(stop_signal, stop_timeout, cfg.get("stop_signal"))
    health = _healthcheck(healthcheck, cfg.get("healthcheck"))
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
    eff_limits = Limits.from_dict(cfg.get("limits") or {}).merged(limits or Limits())
    mounts = list(mounts)
    for i, m in enumerate(mounts):
        if not isinstance(m, Mount):
            raise TypeError(f"mounts[{i}] must be a Mount, not {type(m).__name__}")
        if not os.path.exists(m.source):
            raise SpecError(f"mount source {m.source!r} does not exist", key=f"mounts[{i}].source")
    workdir = validate.workdir(workdir or cfg.get("workdir") or "/")
    user = validate.user(user or cfg.get("user") or "root")
    layers = list(record.layers)
    stack = LayerStack([store.layer_dir(k) / "fs" for k in reversed(layers)])
    uid, gid = (0, 0) if user in ("root", "0", "0:0") else lookup_user(stack, user)

    d = store.containers_dir / key
    with store.lock("gc", shared=True):
        # The image may have been removed and its layers pruned since it was
        # read above; under this lock no prune runs, so look once more.
        if not all(store.has_layer(k) for k in layers):
            raise ImageNotFound(f"image {image!r} was removed meanwhile", name=image)
        try:
            d.mkdir(mode=0o700)  # the umask can only narrow it
        except FileExistsError:
            raise Conflict(f"a container named {name!r} already exists", name=name) from None
        try:
            (d / "upper").mkdir()
            all_mounts = list(mounts)
            if attachment is not None:
                # Bind-mounted, not written into the writable layer: a commit
                # or diff of the container must not carry them.
                files = Path(attachment.files_dir)
                files.mkdir(parents=True, exist_ok=True)
                os.chmod(files, 0o755)
                for file, (target, text) in attachment.files().items():
                    (files / file).write_text(text)
                    os.chmod(files / file, 0o644)
                    all_mounts.append(Mount(str(files / file), target))
            if ids is None:
                rootfs = overlay_spec([store.short_path(k) for k in reversed(layers)], d / "upper")
            else:
                rootfs = f"dir:{USERNS_ROOTFS}"  # in its supervisor's mount namespace
                keep = [str(SECCOMP_PROFILE), *(m.source for m in all_mounts)]
                _prepare_userns(store, d, layers, ids, keep)
            shift = (0, 0) if ids is None else (ids[0], ids[2])
            targets = [
                make_target(
                    d / "upper",
                    stack,
                    m.target,
                    file=not os.path.isdir(m.source),
                    key=f"mounts[{i}].target",
                    shift=shift,
                )
                for i, m in enumerate(all_mounts)
            ]
            tmpfs_targets = [
                (make_target(d / "upper", stack, t, file=False, key=f"tmpfs.{t}", shift=shift), opts)
                for t, opts in tmpfs.items()
            ]
            run_cfg = RunConfig(
                name=name,
                rootfs=rootfs,
                idmap=ids,
                cgroup_dir=cgroup_name(store.root_id, key),
                env=sorted(merged_env.items()),
                cwd=workdir,
                uid=uid,
                gid=gid,
                network="host" if network == "host" else "none",
                mounts=[attrs.evolve(m, target=t) for m, t in zip(all_mounts, targets)],
                limits=eff_limits,
                nics=attachment.nics if attachment else (),
                hostname=attachment.hostname if attachment else None,
                read_only=read_only,
                tmpfs=tmpfs_targets,
            )
            text = render(run_cfg, host_layout())
            # 0600: it may hold secrets (env values); the store's walls keep others out too.
            fd = os.open(d / "config", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "w") as fh:
                fh.write(text)
            meta = ContainerRecord(
                id=os.urandom(32).hex(),
                name=name,
                key=key,
                image=image,
                image_id=record.id,
                layers=tuple(layers),
                command=tuple(argv),
                env=merged_env,
                workdir=workdir,
                user=user,
                uid=uid,
                gid=gid,
                network=network,
                limits=eff_limits,
                mounts=tuple(mounts),
                labels=dict(labels or {}),
                userns=userns,
                created=time.time(),
                **log_options(log_max_size, log_max_files),  # raises SpecError
                restart=restart,
                healthcheck=health,
                extra={
                    **(attachment.meta if attachment else {}),
                    # How its supervisor runs it: see pylxcore.supervisor.attachsock.
                    **({"tty": True} if tty else {}),
                    **({"open_stdin": True} if stdin else {}),
                    **stop,
                    **({"read_only": True} if read_only else {}),
                    **({"tmpfs": tmpfs} if tmpfs else {}),
                    **({"console_size": list(size)} if size and tty else {}),
                },
            )
            atomic_write(d / "meta.json", canonical_json(meta.to_json()))
        except BaseException:
            rmtree(d)
            raise


def _stop_options(stop_signal: object, stop_timeout: object, image_signal: object) -> dict[str, Any]:
    """meta.json's ``stop_signal`` (``stop_signal``, else the image's) and
    ``stop_timeout`` in seconds, those given. Raises SpecError (key
    "stop_signal" or "signal": no such signal here; "stop_timeout")."""
    out: dict[str, Any] = {}
    sig = validate.stop_signal(stop_signal) or validate.stop_signal(image_signal, "config.stop_signal")
    if sig is not None:
        signal_number(sig)  # this host must have it: now, not when it is stopped
        out["stop_signal"] = sig
    if stop_timeout is not None:
        out["stop_timeout"] = validate.duration(stop_timeout, "stop_timeout")
    return out


def _healthcheck(given: Healthcheck | None, image: object) -> dict[str, Any] | None:
    """The healthcheck a container runs (meta.json's form, Docker's defaults
    filled in): ``given``, else the image's; none when that is NONE. Raises
    SpecError, TypeError (not a Healthcheck)."""
    if given is not None and not isinstance(given, Healthcheck):
        raise TypeError(f"healthcheck must be a Healthcheck, not {type(given).__name__}")
    check = given if given is not None else Healthcheck.from_dict(image) if isinstance(image, dict) else None
    if check is None or check.test[0] == "NONE":
        return None
    return {
        "test": list(check.test),
        "interval": check.interval or 30.0,
        "timeout": check.timeout or 30.0,
        "retries": check.retries or 3,
        "start_period": check.start_period,
    }


def _prepare_userns(
    store: Store, d: Path, layers: Sequence[str], ids: tuple[int, int, int, int], keep: Sequence[str]
) -> None:
    """The dirs a user-namespaced container's supervisor mounts on (see
    pylxcore.runtime.userns): one per layer, and the overlay's work dir.
    The writable layer's top belongs to the container's root."""
    (d / "work").mkdir()
    (d / "lower").mkdir()
    for i in range(len(layers)):
        (d / "lower" / str(i)).mkdir()
    base = store.layer_dir(layers[0]) / "fs"
    os.chmod(d / "upper", stat.S_IMODE(os.stat(base).st_mode))
    os.chown(d / "upper", ids[0], ids[2])
    lowers = [str(store.layer_dir(k) / "fs") for k in reversed(layers)]
    UsernsSpec(ids, lowers, list(keep)).write(str(d))
