"""pylxcore: Docker's core ideas (layered images, containers) as a Python library on LXC.

    from pylxcore import Engine, Image, Layer, Limits, Mount
    engine = Engine(root="/srv/px")
    built = engine.images.build(Image("web:1.0", layers=["mkdir -p /www"]))
    with engine.containers.run("web:1.0", ["sleep", "60"], detach=True) as c:
        print(c.exec(["ls", "/www"]).exit_code)

Importing this package does not import liblxc's bindings; that happens on
the first call that needs them.
"""

from __future__ import annotations

from .build import BuildEvent, StepResult
from .containers import Container, ContainerState, ExecResult, ExecStream, LogEntry, Stats
from .engine import Engine, PruneReport
from .errors import (
    BuildError,
    Conflict,
    ContainerError,
    ContainerNotFound,
    ImageNotFound,
    InvalidState,
    LimitError,
    LXCError,
    NotFound,
    PylxcoreError,
    SpecError,
    StorageError,
    TimeoutExpired,
)
from .images import BuiltImage, ImageConfig
from .spec import Image, Layer, Limits, Mount

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "Image",
    "Layer",
    "Limits",
    "Mount",
    "BuiltImage",
    "ImageConfig",
    "StepResult",
    "BuildEvent",
    "Container",
    "ContainerState",
    "ExecResult",
    "ExecStream",
    "LogEntry",
    "Stats",
    "PruneReport",
    "PylxcoreError",
    "SpecError",
    "NotFound",
    "ImageNotFound",
    "ContainerNotFound",
    "Conflict",
    "InvalidState",
    "BuildError",
    "ContainerError",
    "LimitError",
    "StorageError",
    "LXCError",
    "TimeoutExpired",
    "__version__",
]
