"""The registry operations behind Engine.login/logout and ImageCollection.pull/push."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from pylxcore.errors import ImageNotFound, SpecError
from pylxcore.transfer.registry import auth
from pylxcore.transfer.registry.client import RegistryClient
from pylxcore.transfer.registry.reference import DOCKER_HUB, Reference, parse_reference

if TYPE_CHECKING:
    from pathlib import Path

    from pylxcore.engine import Engine
    from pylxcore.images import BuiltImage
    from pylxcore.transfer.progress import TransferProgress

CaFile = str | os.PathLike[str] | None


def client_for(ref: Reference, *, ca_file: CaFile = None, insecure: bool = False) -> RegistryClient:
    """A client for ``ref``'s registry with the credentials kept for it.
    Raises StorageError (unreadable credentials), RegistryError (bad certificates)."""
    return RegistryClient(
        ref.registry,
        api_host=ref.api_host,
        credentials=auth.find_credentials(ref.registry),
        insecure=insecure,
        ca_file=ca_file,
    )


def pull_image(
    engine: Engine,
    ref: str,
    *,
    platform: str | None = None,
    ca_file: CaFile = None,
    insecure: bool = False,
    progress: TransferProgress = None,
) -> BuiltImage:
    """See ImageCollection.pull."""
    from pylxcore.transfer.registry.pull import pull

    parsed = parse_reference(ref)
    client = client_for(parsed, ca_file=ca_file, insecure=insecure)
    return pull(engine, parsed, client, platform=platform, progress=progress)


def push_image(
    engine: Engine,
    image: str,
    dest: str | None = None,
    *,
    ca_file: CaFile = None,
    insecure: bool = False,
    progress: TransferProgress = None,
) -> str:
    """See ImageCollection.push."""
    from pylxcore.transfer.registry.push import push

    target = parse_reference(dest if dest is not None else image)
    return push(engine, image, target, client_for(target, ca_file=ca_file, insecure=insecure), progress)


def base_image(engine: Engine, base: str) -> str:
    """The store name of the image a ``docker://REF`` base names, pulled if the
    store lacks it (once: later builds find it by that name). Raises as pull_image."""
    ref = parse_reference(base)
    name = ref.store_name
    if not engine.images.exists(name):
        from pylxcore.transfer.registry.pull import pull

        pull(engine, ref, client_for(ref), platform=None)
    return name


def login(
    registry: str, username: str, password: str, *, ca_file: CaFile = None, insecure: bool = False
) -> Path:
    """Check the credentials against ``registry`` and keep them; return the file they went to."""
    ref = _registry_ref(registry)
    if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
        raise SpecError("login needs a username and a password", key="username")
    client = RegistryClient(
        ref.registry,
        api_host=ref.api_host,
        credentials=(username, password),
        insecure=insecure,
        ca_file=ca_file,
    )
    client.ping()  # with the credentials: a registry that refuses them says so here
    return auth.save_credentials(ref.registry, username, password)


def logout(registry: str) -> bool:
    """Forget ``registry``'s credentials; whether there were any."""
    return auth.remove_credentials(_registry_ref(registry).registry)


def _registry_ref(registry: str) -> Reference:
    """A reference into ``registry`` ("host[:port]", a URL, or Docker Hub's names). Raises SpecError."""
    if not isinstance(registry, str):
        raise TypeError(f"registry must be a str, not {type(registry).__name__}")
    host = registry.split("://", 1)[-1].rstrip("/").split("/", 1)[0].lower()
    if not host or not re.fullmatch(r"[a-z0-9.-]+(:[0-9]{1,5})?|\[[0-9a-f:]+\](:[0-9]{1,5})?", host):
        raise SpecError(f"invalid registry {registry!r}: expected host[:port]", key="registry")
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DOCKER_HUB
    return Reference(registry=host, repository="x", tag="latest", digest=None)


__all__ = ["client_for", "pull_image", "push_image", "base_image", "login", "logout", "ImageNotFound"]
