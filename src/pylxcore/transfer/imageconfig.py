"""pylxcore image records <-> OCI image configs: runtime config, history, platform.

Export maps a record to the config an OCI runtime reads (the OCI image spec's
config.md); import maps a foreign config back, through the same validators
as a spec's fields, since an archive is foreign input.
"""

from __future__ import annotations

import json
import platform
import time
from typing import Any

from pylxcore._log import log
from pylxcore.build.builder import step_key
from pylxcore.errors import SpecError, StorageError
from pylxcore.runtime.lxcconfig import DEFAULT_PATH
from pylxcore.spec import Healthcheck, Limits, validate
from pylxcore.store import Store
from pylxcore.store.records import ImageRecord
from pylxcore.transfer.ocispec import ANNOTATION_LIMITS

# Kernel machine names -> OCI (GOARCH) names, with the variant where OCI wants one.
_OCI_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}

# Docker config fields with no pylxcore equivalent: import says it drops them.
_IGNORED_FIELDS = ("Shell",)
# The history fields an entry keeps through import and export, as they were.
_HISTORY_FIELDS = ("created", "created_by", "author", "comment", "empty_layer")
_NS = 1_000_000_000  # Docker's healthcheck durations are nanoseconds


def host_platform() -> tuple[str, str | None]:
    """This host's (architecture, variant) in OCI naming, e.g. ("amd64", None)."""
    machine = platform.machine()
    return _OCI_ARCH.get(machine, (machine, None))


def oci_platform() -> dict[str, str]:
    """This host's platform as OCI configs and index entries spell it."""
    arch, variant = host_platform()
    return {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}


def rfc3339(epoch: int) -> str:
    """``epoch`` as the UTC time stamp OCI documents carry, e.g. "1970-01-01T00:00:00Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# ---------------------------------------------------------------------------
# Export: record -> OCI config
# ---------------------------------------------------------------------------


def oci_history(store: Store, record: ImageRecord, created: str) -> list[dict[str, Any]]:
    """One history entry per step; those of layers with files are not ``empty_layer``.

    For an image built on another image, the parent's layers are not in the
    record's history: they get entries of their own, from their layer records.
    """
    layers: list[str] = list(record.layers)
    out: list[dict[str, Any]] = []
    done = 0

    def entry(instruction: str, empty: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"created": created, "created_by": instruction, "comment": "pylxcore"}
        if empty:
            item["empty_layer"] = True
        return item

    for step in record.history:
        key = step.key
        if key in layers[done:]:
            index = layers.index(key, done)
            while done < index:
                out.append(entry(store.get_layer(layers[done]).instruction, False))
                done += 1
            out.append(dict(step.oci) if step.oci else entry(step.instruction, False))
            done += 1
        else:
            out.append(dict(step.oci) if step.oci else entry(step.instruction, True))
    while done < len(layers):
        out.append(entry(store.get_layer(layers[done]).instruction, False))
        done += 1
    return out


def oci_config(store: Store, record: ImageRecord, diff_ids: list[str], epoch: int) -> dict[str, Any]:
    """The OCI image config of an image record (see the OCI image spec, config.md)."""
    cfg = record.config
    env = dict(cfg.get("env") or {})
    env_list = [] if "PATH" in env else [f"PATH={DEFAULT_PATH}"]
    env_list += [f"{k}={v}" for k, v in sorted(env.items())]
    container: dict[str, Any] = {"Env": env_list, "WorkingDir": cfg.get("workdir") or "/"}
    if cfg.get("entrypoint") is not None:
        container["Entrypoint"] = list(cfg["entrypoint"])
    if cfg.get("cmd") is not None:
        container["Cmd"] = list(cfg["cmd"])
    user = cfg.get("user") or "root"
    if user != "root":
        container["User"] = user
    if cfg.get("labels"):
        container["Labels"] = dict(cfg["labels"])
    if cfg.get("exposed_ports"):
        container["ExposedPorts"] = {port: {} for port in cfg["exposed_ports"]}
    if cfg.get("volumes"):
        container["Volumes"] = {path: {} for path in cfg["volumes"]}
    if cfg.get("stop_signal"):
        container["StopSignal"] = cfg["stop_signal"]
    if cfg.get("onbuild"):
        container["OnBuild"] = list(cfg["onbuild"])
    if cfg.get("healthcheck"):
        container["Healthcheck"] = oci_healthcheck(Healthcheck.from_dict(cfg["healthcheck"]))
    origin = record.origin
    created = origin.get("created") or rfc3339(epoch)
    return {
        "created": created,
        **({"author": origin["author"]} if origin.get("author") else {}),
        **oci_platform(),
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": oci_history(store, record, created),
    }


def oci_healthcheck(check: Healthcheck) -> dict[str, Any]:
    """Docker's ``Healthcheck`` of a Healthcheck: durations in nanoseconds, unset ones left out."""
    out: dict[str, Any] = {"Test": list(check.test)}
    for field, name in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
        value = getattr(check, field)
        if value:
            out[name] = round(value * _NS)
    if check.retries:
        out["Retries"] = check.retries
    return out


# ---------------------------------------------------------------------------
# Import: OCI config -> record
# ---------------------------------------------------------------------------


def record_healthcheck(value: Any) -> dict[str, Any] | None:
    """The record form of Docker's ``Healthcheck`` (nanoseconds become seconds). Raises SpecError."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise SpecError(f"expected a mapping, got {type(value).__name__}", key="config.Healthcheck")
    durations = {}
    for field, name in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
        ns = value.get(name) or 0
        if isinstance(ns, bool) or not isinstance(ns, int):
            raise SpecError(
                f"expected nanoseconds as an integer, got {ns!r}", key=f"config.Healthcheck.{name}"
            )
        durations[field] = ns / _NS
    try:
        check = Healthcheck(value.get("Test") or (), retries=value.get("Retries") or 0, **durations)
    except SpecError as err:
        raise SpecError(err.reason, key="config.Healthcheck." + err.key.split(".", 1)[-1]) from None
    return check.to_dict()


def _names_of(value: Any, key: str) -> list[Any]:
    """The keys of Docker's ``{"80/tcp": {}}`` sets (ExposedPorts, Volumes)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise SpecError(f"expected a mapping, got {type(value).__name__}", key=key)
    return list(value)


def record_config(config: dict[str, Any], limits_json: str | None) -> dict[str, Any]:
    """pylxcore's image config from an OCI one, kept whole (Entrypoint stays apart from Cmd).

    ``limits_json`` is the manifest's ``io.pylxcore.runtime.limits``
    annotation, if any. Every field goes through the same validators as a
    spec's (pylxcore.spec.validate). Raises SpecError naming the field
    (``config.Env[2]``, ``config.WorkingDir``, …), StorageError (invalid limits
    annotation).
    """
    c = config.get("config") or {}
    if not isinstance(c, dict):
        raise SpecError(f"expected a mapping, got {type(c).__name__}", key="config")
    env: dict[str, str] = {}
    items = c.get("Env") or []
    if not isinstance(items, list):
        raise SpecError(f"expected a list of KEY=VALUE strings, got {type(items).__name__}", key="config.Env")
    for i, item in enumerate(items):
        if not isinstance(item, str) or "=" not in item:
            raise SpecError(f"expected a KEY=VALUE string, got {item!r}", key=f"config.Env[{i}]")
        key, _, value = item.partition("=")
        env[validate.env_name(key, f"config.Env[{i}]")] = validate.env_value(key, value, "config.Env")
    if env.get("PATH") == DEFAULT_PATH:
        del env["PATH"]  # what export adds when the image sets none
    entrypoint = validate.command(c.get("Entrypoint") or None, "config.Entrypoint")
    cmd = validate.command(c.get("Cmd") or None, "config.Cmd")
    limits: dict[str, object] = {}
    if limits_json:
        try:
            limits = Limits.from_dict(json.loads(limits_json)).to_dict()
        except (ValueError, SpecError) as err:
            raise StorageError(f"the image's {ANNOTATION_LIMITS} annotation is invalid: {err}") from err
    ignored = sorted(k for k in _IGNORED_FIELDS if c.get(k))
    if ignored:
        log(
            "info",
            "import: the image config's %s have no pylxcore equivalent and are ignored",
            ", ".join(ignored),
        )
    extra = {
        "entrypoint": list(entrypoint) if entrypoint is not None else None,
        "exposed_ports": list(validate.ports(_names_of(c.get("ExposedPorts"), "config.ExposedPorts"),
                                             "config.ExposedPorts")),
        "volumes": list(validate.paths(_names_of(c.get("Volumes"), "config.Volumes"), "config.Volumes")),
        "stop_signal": validate.stop_signal(c.get("StopSignal") or None, "config.StopSignal"),
        "healthcheck": record_healthcheck(c.get("Healthcheck")),
        "onbuild": list(validate.onbuild(c.get("OnBuild") or [], "config.OnBuild")),
    }
    return {
        "env": env,
        "workdir": validate.workdir(c.get("WorkingDir") or "/", "config.WorkingDir"),
        "user": validate.user(c.get("User") or "root", "config.User"),
        "cmd": list(cmd) if cmd is not None else None,
        "labels": validate.labels(c.get("Labels") or {}, "config.Labels"),
        "limits": limits,
        # Only when set, as the builder writes them: the same image, the same id.
        **{k: v for k, v in extra.items() if v},
    }


def record_origin(config: dict[str, Any]) -> dict[str, str]:
    """What an export writes back of a foreign config beside its runtime config: created, author."""
    return {k: config[k] for k in ("created", "author") if isinstance(config.get(k), str) and config[k]}


def _history_entry(h: dict[str, Any]) -> dict[str, Any]:
    """The fields of a foreign history entry that export writes back as they were."""
    if h.get("_made_up"):
        return {}
    return {k: h[k] for k in _HISTORY_FIELDS if isinstance(h.get(k), (str, bool))}


def record_history(config: dict[str, Any], keys: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(the record's history, one instruction per layer) from the OCI config's history.

    ``keys`` are the imported layers' keys, bottom first. A metadata-only step
    (``empty_layer``) gets a key of its own derived from the layer below it.
    """
    history = [h for h in config.get("history") or [] if isinstance(h, dict)]
    if sum(1 for h in history if not h.get("empty_layer")) != len(keys):
        # Missing or inconsistent: one (made-up, so not written back) per layer.
        history = [{"created_by": f"layer {k}", "_made_up": True} for k in keys]
    out: list[dict[str, Any]] = []
    instructions: list[str] = []
    done = 0
    for n, h in enumerate(history):
        instruction = str(h.get("created_by") or h.get("comment") or "")
        if h.get("empty_layer"):
            parent = keys[done - 1] if done else None
            out.append(
                {
                    "instruction": instruction,
                    "key": step_key(parent, {"oci_history": n, "created_by": instruction}),
                    "oci": _history_entry(h),
                }
            )
        else:
            out.append({"instruction": instruction, "key": keys[done], "oci": _history_entry(h)})
            instructions.append(instruction or f"layer {done}")
            done += 1
    return out, instructions


__all__ = [
    "host_platform",
    "oci_platform",
    "rfc3339",
    "oci_history",
    "oci_config",
    "oci_healthcheck",
    "record_config",
    "record_healthcheck",
    "record_origin",
    "record_history",
]
