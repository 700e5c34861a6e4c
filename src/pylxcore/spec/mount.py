"""The Mount value: a host path bind-mounted into a container (``docker run -v``)."""

from __future__ import annotations

from typing import Any

import attrs

from pylxcore.errors import SpecError
from pylxcore.spec.validate import absolute_path, type_name, volume_name

__all__ = ["Mount"]


# Validators take Any: they exist to catch values of the wrong type.
def _check_mount_source(_inst: object, _attr: object, value: Any) -> None:
    if value != "":  # (none: a volume's, filled in when the container is made)
        absolute_path(value, "mount.source")


def _check_volume(_inst: object, _attr: object, value: Any) -> None:
    if value is not None:
        volume_name(value, "mount.volume")


def _check_mount_target(_inst: object, _attr: object, value: Any) -> None:
    # ".." in a target would be resolved by the kernel relative to the
    # container's root and could land on a path nobody meant.
    absolute_path(value, "mount.target", allow_dotdot=False)


def _check_bool(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(
            f"expected True or False, got {value!r} ({type_name(value)})", key=f"mount.{attr.name}"
        )


@attrs.frozen
class Mount:
    """A host path bind-mounted into a container: ``Mount("/srv/data", "/data", read_only=True)``;
    or a volume of the engine's (``engine.volumes``), made on first use:
    ``Mount(volume="data", target="/data")``.

    Whether ``source`` exists is checked when the container starts, not here.

    Raises:
        SpecError: (key ``mount.source``/``mount.target``/``mount.read_only``/``mount.volume``)
            when a path is not absolute, the target contains ``..``, a volume's name is
            bad, neither a source nor a volume is given, or a type is wrong.
    """

    source: str = attrs.field(default="", validator=_check_mount_source)
    target: str = attrs.field(default="", validator=_check_mount_target)
    read_only: bool = attrs.field(default=False, validator=_check_bool)
    volume: str | None = attrs.field(default=None, kw_only=True, validator=_check_volume)

    def __attrs_post_init__(self) -> None:
        if not self.source and self.volume is None:
            raise SpecError("expected an absolute path, or volume=NAME", key="mount.source")

    @classmethod
    def parse(cls, text: str) -> Mount:
        """Parse the ``docker run -v`` form ``SOURCE:TARGET[:ro|rw]``.

        Raises:
            SpecError: (key ``mount``) for a malformed string, or as the constructor.
        """
        parts = text.split(":") if isinstance(text, str) else []
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return cls(parts[0], parts[1], read_only=parts[2] == "ro")
        raise SpecError(f"expected SOURCE:TARGET[:ro|rw] with absolute paths, got {text!r}", key="mount")
