"""pylxcore: Docker's core ideas (layered images, containers) as a Python library on LXC.

    from pylxcore import Engine, Image, Layer, Limits, Mount

    engine = Engine(root="/srv/px")
    built = engine.images.build(Image("web:1.0", layers=["mkdir -p /www"]))
    with engine.containers.run("web:1.0", ["sleep", "60"], detach=True) as c:
        print(c.exec(["ls", "/www"]).exit_code)

Importing this package loads nothing else: each name loads its module on
first use, and liblxc's bindings load on the first call that needs them.
"""

from __future__ import annotations

# Not from typing: importing it costs ~10 ms (re, collections, …), which a
# supervisor started by a fresh interpreter would pay (it imports this package).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pylxcore.build.builder import StepResult
    from pylxcore.build.progress import BuildEvent
    from pylxcore.engine import Engine, PruneReport
    from pylxcore.errors import (
        BuildError,
        Conflict,
        ContainerError,
        ContainerNotFound,
        ImageNotFound,
        InvalidState,
        LimitError,
        LXCError,
        NetworkNotFound,
        NotFound,
        PylxcoreError,
        RegistryError,
        SpecError,
        StorageError,
        TimeoutExpired,
        VolumeNotFound,
    )
    from pylxcore.images import BuiltImage, ImageConfig
    from pylxcore.runtime.cgroups import Stats
    from pylxcore.runtime.container import Container
    from pylxcore.runtime.events import Event
    from pylxcore.runtime.exec import ExecResult, ExecStream
    from pylxcore.runtime.logs import LogEntry
    from pylxcore.runtime.state import ContainerState
    from pylxcore.spec import Healthcheck, Image, Layer, Limits, Mount
    from pylxcore.transfer.progress import TransferEvent

# The public names, and the module each lives in. They load on first use
# (PEP 562): the command line answers an unchanged build from its record
# without paying for attrs, PyYAML and the rest.
_HOMES = {
    "BuildEvent": "build.progress",
    "TransferEvent": "transfer.progress",
    "StepResult": "build.builder",
    "Container": "runtime.container",
    "ContainerState": "runtime.state",
    "ExecResult": "runtime.exec",
    "ExecStream": "runtime.exec",
    "Event": "runtime.events",
    "LogEntry": "runtime.logs",
    "Stats": "runtime.cgroups",
    "Engine": "engine",
    "PruneReport": "engine",
    "BuildError": "errors",
    "Conflict": "errors",
    "ContainerError": "errors",
    "ContainerNotFound": "errors",
    "ImageNotFound": "errors",
    "InvalidState": "errors",
    "LimitError": "errors",
    "LXCError": "errors",
    "NetworkNotFound": "errors",
    "NotFound": "errors",
    "PylxcoreError": "errors",
    "RegistryError": "errors",
    "SpecError": "errors",
    "StorageError": "errors",
    "TimeoutExpired": "errors",
    "VolumeNotFound": "errors",
    "BuiltImage": "images",
    "ImageConfig": "images",
    "Healthcheck": "spec",
    "Image": "spec",
    "Layer": "spec",
    "Limits": "spec",
    "Mount": "spec",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pylxcore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


__version__ = "0.1.0"

__all__ = [
    "Engine",
    "Image",
    "Layer",
    "Limits",
    "Mount",
    "Healthcheck",
    "BuiltImage",
    "ImageConfig",
    "StepResult",
    "BuildEvent",
    "TransferEvent",
    "Container",
    "ContainerState",
    "ExecResult",
    "ExecStream",
    "Event",
    "LogEntry",
    "Stats",
    "PruneReport",
    "PylxcoreError",
    "SpecError",
    "NotFound",
    "ImageNotFound",
    "ContainerNotFound",
    "NetworkNotFound",
    "VolumeNotFound",
    "Conflict",
    "InvalidState",
    "BuildError",
    "ContainerError",
    "LimitError",
    "StorageError",
    "LXCError",
    "TimeoutExpired",
    "RegistryError",
    "__version__",
]
