"""A container's files: the methods of Container that read and write them
(pylxcore.runtime.archive), say what changed (.changes) and make an image
of them (.commit), kept here to keep runtime.container small."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, cast

if TYPE_CHECKING:
    from pylxcore.runtime.container import Container


class ContainerFiles:
    """Container's methods on its files (a mixin: Container is the only user)."""

    def get_archive(self, path: str) -> tuple[Any, dict[str, Any]]:
        """``path`` as a tar stream (an iterator of bytes) and its stat, like
        docker-py's; see pylxcore.runtime.archive.get_archive for what it raises."""
        from pylxcore.runtime.archive import get_archive

        return get_archive(cast("Container", self), path)

    def put_archive(self, path: str, data: Any) -> bool:
        """Unpack the tar ``data`` (bytes or a binary stream) into the directory
        ``path``; see pylxcore.runtime.archive.put_archive for what it raises."""
        from pylxcore.runtime.archive import put_archive

        return put_archive(cast("Container", self), path, data)

    def export(self) -> Any:
        """The container's filesystem as a tar stream (``docker export``);
        see pylxcore.runtime.archive.export."""
        from pylxcore.runtime.archive import export

        return export(cast("Container", self))

    def diff(self) -> list[Any]:
        """What the container changed: ``Change(kind, path)``, kind "A", "C" or "D" (``docker diff``)."""
        from pylxcore.runtime.changes import diff

        return diff(cast("Container", self))

    def top(self, ps_args: str = "-ef") -> dict[str, Any]:
        """Its processes as ``docker top`` lists them. Raises InvalidState (not running)."""
        from pylxcore.runtime.changes import top

        return top(cast("Container", self), ps_args)

    def commit(
        self,
        repository: str | None = None,
        tag: str | None = None,
        *,
        message: str | None = None,
        author: str | None = None,
        changes: Sequence[str] | str | None = None,
        pause: bool = True,
    ) -> Any:
        """A new image of the container's files and config (``docker commit``);
        see pylxcore.runtime.commit.commit for the options and what it raises."""
        from pylxcore.runtime.commit import commit

        ctr = cast("Container", self)
        return commit(ctr, repository, tag, message=message, author=author, changes=changes, pause=pause)

    def rename(self, name: str) -> None:
        """Give the container the name ``name``, whatever its state (``docker
        rename``); see pylxcore.runtime.rename.rename for what it raises."""
        from pylxcore.runtime.rename import rename

        rename(cast("Container", self), name)
