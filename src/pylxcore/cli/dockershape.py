"""Containers and images as Docker's API documents shape them, for
``inspect -f`` and ``ps --format`` templates (``{{.State.Status}}``,
``{{.Config.Env}}``, ``{{.Names}}``)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from pylxcore.runtime.lxcconfig import DEFAULT_PATH

if TYPE_CHECKING:
    from pylxcore.images import BuiltImage
    from pylxcore.runtime.container import Container

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(when: float | None) -> str:
    """A unix time as Docker writes times (UTC, nanoseconds); Go's zero time for none."""
    if not when:
        return ZERO_TIME
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _env_list(env: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def container_document(container: Container) -> dict[str, Any]:
    """``docker container inspect``'s document, for what pylxcore knows."""
    from pylxcore.runtime.commit import split_command

    info = container.inspect()
    state = info["state"]
    image = container._collection._store.get_image_record(container.image_id)
    entrypoint, cmd = split_command(info["command"], image.config if image is not None else {})
    health = info.get("health")
    meta = container._meta()
    limits = meta.limits
    policy, _, retries = (info.get("restart_policy") or "no").partition(":")
    ports = {port: [{"HostIp": ip, "HostPort": str(hp)} for ip, hp in binds]
             for port, binds in (info.get("ports") or {}).items()}
    doc: dict[str, Any] = {
        "Id": info["id"],
        "Created": rfc3339(info.get("created")),
        "Path": info["command"][0] if info["command"] else "",
        "Args": info["command"][1:],
        "State": {
            "Status": state,
            "Running": state in ("running", "paused"),
            "Paused": state == "paused",
            "Restarting": state == "restarting",
            "OOMKilled": bool(info.get("oom_killed")),
            "Dead": False,
            "Pid": (container._pids()[1] or 0) if state in ("running", "paused") else 0,
            "ExitCode": info.get("exit_code") or 0,
            "Error": "",
            "StartedAt": rfc3339(info.get("started_at")),
            "FinishedAt": rfc3339(info.get("finished_at")),
        },
        "Image": info["image_id"],
        "Name": "/" + info["name"],
        "RestartCount": info.get("restart_count") or 0,
        "HostConfig": {
            "Memory": max(limits.memory or 0, 0),
            "MemorySwap": limits.memory_swap or 0,
            "NanoCpus": int((limits.cpus or 0) * 1e9),
            "CpuShares": limits.cpu_shares or 0,
            "CpusetCpus": limits.cpuset or "",
            "PidsLimit": limits.pids,
            "NetworkMode": info.get("network") or "none",
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(retries or 0)},
            "PortBindings": ports,
            "ReadonlyRootfs": bool(meta.extra.get("read_only")),
            "Tmpfs": dict(meta.extra.get("tmpfs") or {}) or None,
        },
        "Mounts": [
            {"Type": "bind", "Source": m.get("source"), "Destination": m.get("target"),
             "RW": not m.get("read_only", False)}
            for m in info.get("mounts") or []
        ],
        "Config": {
            "Hostname": info.get("hostname") or info["name"],
            "User": "" if info.get("user") in (None, "root") else info["user"],
            # (the PATH its processes get when the image sets none, as docker lists it)
            "Env": _env_list({"PATH": DEFAULT_PATH, **(info.get("env") or {})}),
            "Cmd": cmd,
            "Image": info["image"],
            "WorkingDir": "" if info.get("workdir") == "/" else info.get("workdir"),
            "Entrypoint": entrypoint,
            "Labels": info.get("labels") or {},
            "Tty": bool(meta.extra.get("tty")),
            "OpenStdin": bool(meta.extra.get("open_stdin")),
            # Docker sets these for a client that attaches when it creates the
            # container (``docker create``, a foreground ``docker run``); a
            # container here is made detached first (``docker run -d``'s: false).
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "StdinOnce": False,
            "StopSignal": meta.extra.get("stop_signal") or "",  # (given, else the image's)
            "StopTimeout": _seconds(meta.extra.get("stop_timeout")),
            "OnBuild": None,  # (an image's alone: a container's is always null in docker's)
        },
        "NetworkSettings": {
            "Ports": ports,
            "Networks": {name: {"IPAddress": net.get("ip", "")} for name, net in
                         (info.get("networks") or {}).items()},
        },
    }
    if health is not None:
        doc["State"]["Health"] = {
            "Status": health.get("status"),
            "FailingStreak": health.get("failing_streak", 0),
        }
    return doc


def _seconds(value: object) -> int | float | None:
    """A stop timeout as docker's document holds it: whole seconds as an int; None: not set."""
    if not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() else value


def image_document(image: BuiltImage) -> dict[str, Any]:
    """``docker image inspect``'s document, for what pylxcore knows."""
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": list(image.tags),
        "Created": rfc3339(image.created),
        "Size": image.size,
        "Config": {
            "User": "" if config.user == "root" else config.user,
            "Env": _env_list(config.env),
            "Cmd": list(config.cmd) if config.cmd is not None else None,
            "Entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
            "WorkingDir": "" if config.workdir == "/" else config.workdir,
            "Labels": config.labels or None,
            "ExposedPorts": {p: {} for p in config.exposed_ports} or None,
            "Volumes": {v: {} for v in config.volumes} or None,
            "StopSignal": config.stop_signal or "",
            "OnBuild": list(config.onbuild) or None,
        },
        "RootFS": {"Type": "layers", "Layers": list(image.layer_keys)},
    }


def ps_row(container: Container, status: str) -> dict[str, Any]:
    """One ``docker ps --format`` row: its fields as docker names them."""
    ports = ", ".join(f"{ip}:{hp}->{port}" for port, binds in container.ports.items() for ip, hp in binds)
    command = " ".join(container.command)
    return {
        "ID": container.id[:12],
        "Image": container.image,
        "Command": f'"{command[:20]}…"' if len(command) > 20 else f'"{command}"',
        "CreatedAt": datetime.datetime.fromtimestamp(container.created).strftime("%Y-%m-%d %H:%M:%S %z"),
        "RunningFor": _ago(container.created),
        "Ports": ports,
        "State": container.state.value,
        "Status": status,
        "Names": container.name,
        "Labels": ",".join(f"{k}={v}" for k, v in container._meta().labels.items()),
        "Mounts": ",".join(m.target for m in container._meta().mounts),
        "Networks": ",".join(container._meta().extra.get("networks") or {}) or container._meta().network,
    }


def _ago(when: float) -> str:
    from pylxcore.cli.output import ago

    return ago(when)
