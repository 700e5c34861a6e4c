"""The error hierarchy of SPEC.md section 4: one root, structured fields.

Every error keeps its constructor arguments in ``args`` so it pickles (it can
cross a process boundary, e.g. from a multiprocessing worker), and exposes
them as attributes a program can read instead of parsing the message.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = [
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
]


class PylxcoreError(Exception):
    """Root of every error pylxcore raises on purpose."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)
        self._fields = fields

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self._fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[PylxcoreError], message: str, fields: dict[str, Any]) -> PylxcoreError:
    err = cls.__new__(cls)
    PylxcoreError.__init__(err, message, **fields)
    return err


class SpecError(PylxcoreError, ValueError):
    """An image spec (Python or YAML) is wrong.

    Fields: ``path`` (file or None), ``line`` (1-based or None), ``key``
    (the key path like ``layers[2].copy.src`` or ""), ``reason``.
    """

    reason: str
    key: str
    path: str | None
    line: int | None

    def __init__(
        self, reason: str, *, key: str = "", path: str | None = None, line: int | None = None
    ) -> None:
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        elif line:
            where = f"line {line}: "
        text = f"{where}{key}: {reason}" if key else f"{where}{reason}"
        super().__init__(text, reason=reason, key=key, path=path, line=line)


class NotFound(PylxcoreError, LookupError):
    """Something named does not exist. Field: ``name``."""

    name: str

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message, name=name)


class ImageNotFound(NotFound):
    """No image by that name, tag or id."""


class ContainerNotFound(NotFound):
    """No container by that name or id."""


class NetworkNotFound(NotFound):
    """No network by that name."""


class VolumeNotFound(NotFound):
    """No volume by that name."""


class Conflict(PylxcoreError):
    """The name is taken, or the object is in use. Field: ``name``."""

    name: str

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message, name=name)


class InvalidState(PylxcoreError):
    """The operation does not fit the object's state. Fields: ``name``, ``state``, ``operation``."""

    name: str
    state: str
    operation: str

    def __init__(self, message: str, *, name: str = "", state: str = "", operation: str = "") -> None:
        super().__init__(message, name=name, state=state, operation=operation)


class BuildError(PylxcoreError):
    """A build step failed.

    Fields: ``step`` (the step's number as progress shows it: 0 is the base,
    ``i`` is ``Image.layers[i - 1]``), ``layer_index`` (the index in
    ``Image.layers``, as in the YAML's ``layers[i]``; None when the base
    failed), ``instruction``, ``exit_code`` (None when no process ran),
    ``output_tail`` (last lines of output).
    """

    reason: str
    step: int | None
    layer_index: int | None
    instruction: str
    exit_code: int | None
    output_tail: list[str]

    def __init__(
        self,
        reason: str,
        *,
        step: int | None = None,
        instruction: str = "",
        exit_code: int | None = None,
        output_tail: Sequence[str] = (),
    ) -> None:
        text = reason
        if step is not None:
            text = f"step {step} ({instruction}): {reason}"
        if output_tail:
            text += "\n" + "\n".join("  | " + line for line in output_tail)
        super().__init__(
            text,
            reason=reason,
            step=step,
            layer_index=step - 1 if step else None,
            instruction=instruction,
            exit_code=exit_code,
            output_tail=list(output_tail),
        )


class ContainerError(PylxcoreError):
    """A container run with ``detach=False`` exited non-zero.

    Fields: ``container`` (name), ``exit_status``, ``command``, ``image``, ``stdout``, ``stderr``.
    """

    container: str
    exit_status: int
    command: list[str]
    image: str
    stdout: bytes
    stderr: bytes

    def __init__(
        self,
        *,
        container: str,
        exit_status: int,
        command: Sequence[str],
        image: str,
        stdout: bytes = b"",
        stderr: bytes = b"",
    ) -> None:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        text = (
            f"command {list(command)!r} in container {container!r} (image {image}) exited with {exit_status}"
        )
        if tail:
            text += ": " + " / ".join(tail)
        super().__init__(
            text,
            container=container,
            exit_status=exit_status,
            command=list(command),
            image=image,
            stdout=stdout,
            stderr=stderr,
        )


class LimitError(PylxcoreError):
    """A resource limit is invalid or cannot be enforced on this host. Fields: ``limit``, ``value``."""

    limit: str
    value: object

    def __init__(self, message: str, *, limit: str = "", value: object = None) -> None:
        super().__init__(message, limit=limit, value=value)


class StorageError(PylxcoreError):
    """The store on disk cannot do what was asked (full disk, corrupt data). Field: ``path``."""

    path: str

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message, path=path)


class LXCError(PylxcoreError):
    """liblxc refused or failed. Fields: ``operation``, ``container``, ``detail``."""

    operation: str
    container: str
    detail: str

    def __init__(self, message: str, *, operation: str = "", container: str = "", detail: str = "") -> None:
        super().__init__(message, operation=operation, container=container, detail=detail)


class TimeoutExpired(PylxcoreError, TimeoutError):
    """A wait ran out of time. Fields: ``operation``, ``timeout``."""

    operation: str
    timeout: float | None

    def __init__(self, message: str, *, operation: str = "", timeout: float | None = None) -> None:
        super().__init__(message, operation=operation, timeout=timeout)


class RegistryError(PylxcoreError):
    """A container registry refused or failed: authentication, TLS, transport, or
    content that does not match its digest. Fields: ``registry`` (host[:port]),
    ``status`` (the HTTP status, 0 when there was no answer), ``reason`` (the
    registry's own message, or the transport's)."""

    registry: str
    status: int
    reason: str

    def __init__(self, message: str, *, registry: str = "", status: int = 0, reason: str = "") -> None:
        super().__init__(message, registry=registry, status=status, reason=reason)
