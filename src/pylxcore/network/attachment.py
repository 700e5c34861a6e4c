"""What a container's networks add to it: a value, made by
pylxcore.network.collection and used by pylxcore.runtime.provision."""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from pylxcore.runtime.lxcconfig import Nic

# The files each networked container gets, bind-mounted from its dir.
NET_FILES = (("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"))


@attrs.frozen
class Attachment:
    """A container's place on its networks, allocated before it is made."""

    nics: tuple[Nic, ...]  # its veths, in liblxc's config
    # Where its hosts and resolv.conf are kept: outside its own dir (which is
    # root's alone), so that a user-namespaced container's root can reach them
    # (see pylxcore.supervisor.mounts); under the store's walls all the same.
    files_dir: str
    hostname: str | None
    hosts: str  # its /etc/hosts
    resolv_conf: str  # its /etc/resolv.conf
    meta: Mapping[str, Any]  # what goes into its meta.json: networks, ports, hostname

    def files(self) -> dict[str, tuple[str, str]]:
        """{file name in the container's dir: (where it is mounted in the container, text)}."""
        texts = {"hosts": self.hosts, "resolv.conf": self.resolv_conf}
        return {name: (target, texts[name]) for name, target in NET_FILES}
