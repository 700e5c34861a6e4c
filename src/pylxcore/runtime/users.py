"""The one lookup of a ``user`` option (name or uid, group or gid) in an image's passwd and group files."""

from __future__ import annotations

from pylxcore.errors import SpecError
from pylxcore.runtime.rootfs import LayerStack


def lookup_user(stack: LayerStack, user: str) -> tuple[int, int]:
    """uid and gid for "name", "uid", "name:group" or "uid:gid", from the
    files of ``stack`` (a numeric uid needs no entry; its gid is the entry's,
    else 0, as with Docker and podman). Raises SpecError (key "user") for a name or group the
    image does not have."""
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        data = stack.read_bytes(path) or b""
        return [
            line.split(":")
            for line in data.decode("utf-8", "replace").splitlines()
            if line and line[0] != "#"
        ]

    if name.isdigit():
        # Without a passwd entry Docker and podman run a bare uid in group 0 (root).
        uid, gid = int(name), 0
        for row in table("/etc/passwd"):
            if len(row) > 3 and row[2] == name and row[3].isdigit():
                gid = int(row[3])
                break
    else:
        for row in table("/etc/passwd"):
            if len(row) > 3 and row[0] == name and row[2].isdigit() and row[3].isdigit():
                uid, gid = int(row[2]), int(row[3])
                break
        else:
            raise SpecError(f"user {name!r} is not in the image's /etc/passwd", key="user")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for row in table("/etc/group"):
                if len(row) > 2 and row[0] == group and row[2].isdigit():
                    gid = int(row[2])
                    break
            else:
                raise SpecError(f"group {group!r} is not in the image's /etc/group", key="user")
    return uid, gid
