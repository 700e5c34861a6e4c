"""User namespaces: container root as an unprivileged host uid range.

With ``userns=True`` a container's ids 0..65535 are host ids START.. from
root's subordinate range in /etc/subuid and /etc/subgid (what liblxc's
newuidmap checks, like LXD and podman). The image's layers stay as they are,
owned by host root and shared by every container: the container's supervisor
mounts each one *idmapped* (mount_setattr(2), so that host uid 0 reads as
START, which the namespace shows as 0) in a mount namespace of its own, puts
the overlay over them there, and hands liblxc that tree as a plain ``dir:``
rootfs with ``lxc.idmap`` (liblxc 5.0 does not idmap an overlay rootfs
itself). Nothing is copied or chowned but the container's own writable layer,
whose files belong to START.. on the host. The mounts live and die with the
supervisor's mount namespace: the host never sees them (see
pylxcore.supervisor.mounts, and supervisor.runspec.UsernsSpec for what the
library tells it to mount).
"""

from __future__ import annotations

from pylxcore.errors import LXCError

MAX_IDS = 65536


def _range(path: str) -> tuple[int, int] | None:
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in ("root", "0") and fields[1].isdigit() and fields[2].isdigit():
            start, count = int(fields[1]), int(fields[2])
            if start > 0 and count > 0:
                return start, min(count, MAX_IDS)
    return None


def subordinate_ids() -> tuple[int, int, int, int]:
    """(uid start, uid count, gid start, gid count) for user-namespaced containers.

    Raises LXCError when root has no subordinate range (scripts/setup adds
    ``root:1000000:65536`` to /etc/subuid and /etc/subgid)."""
    uids, gids = _range("/etc/subuid"), _range("/etc/subgid")
    if uids is None or gids is None:
        missing = " and ".join(p for p, r in (("/etc/subuid", uids), ("/etc/subgid", gids)) if r is None)
        raise LXCError(
            f"userns=True needs a subordinate id range for root in {missing} "
            "(a line like 'root:1000000:65536')",
            operation="create",
        )
    return uids[0], uids[1], gids[0], gids[1]
