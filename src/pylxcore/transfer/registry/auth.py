"""Registry credentials in the files Docker and podman keep them in.

Read, in order: docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``), then containers' ``auth.json``
(``$REGISTRY_AUTH_FILE``, else ``/run/containers/$UID/auth.json``, then
``~/.config/containers/auth.json``). Each holds ``{"auths": {"host[:port]":
{"auth": base64("user:password")}}}``. ``login`` and ``logout`` write docker's
file (0600, replaced atomically). Credential helpers (``credsStore``) are not
run: entries kept by a helper are not seen.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from pylxcore.errors import StorageError
from pylxcore.transfer.registry.reference import DOCKER_HUB

# Docker Hub's key in docker's config.json.
_HUB_KEY = "https://index.docker.io/v1/"


def docker_config_path() -> Path:
    """docker's config.json: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    top = os.environ.get("DOCKER_CONFIG")
    return Path(top) / "config.json" if top else Path.home() / ".docker" / "config.json"


def auth_files() -> list[Path]:
    """Every file credentials are read from, in the order they are tried."""
    files = [docker_config_path()]
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        files.append(Path(env))
    files.append(Path(f"/run/containers/{os.getuid()}/auth.json"))
    files.append(Path.home() / ".config" / "containers" / "auth.json")
    return files


def _key_host(key: str) -> str:
    """The host[:port] an ``auths`` key names ("https://host/v1/" or plain "host")."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io", "docker.io") else host


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise StorageError(f"cannot read the registry credentials in {path}: {err}", path=str(path)) from err
    if not isinstance(data, dict):
        raise StorageError(f"{path} is not a JSON object", path=str(path))
    return data


def find_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) kept for ``registry`` (host[:port]), or None.

    Raises StorageError for an unreadable or malformed credentials file.
    """
    for path in auth_files():
        auths = _read(path).get("auths") or {}
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if _key_host(str(key)) != registry or not isinstance(entry, dict):
                continue
            encoded = entry.get("auth")
            if not isinstance(encoded, str) or not encoded:
                continue
            try:
                user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as err:
                raise StorageError(
                    f"the entry for {key} in {path} is not base64 'user:password'", path=str(path)
                ) from err
            if sep:
                return user, password
    return None


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent="\t")
        fh.write("\n")
    os.replace(tmp, path)


def _key_for(registry: str) -> str:
    return _HUB_KEY if registry == DOCKER_HUB else registry


def save_credentials(registry: str, username: str, password: str) -> Path:
    """Keep (username, password) for ``registry`` in docker's config.json; return its path.

    Other entries and settings of the file stay. Raises StorageError.
    """
    path = docker_config_path()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = data["auths"] = {}
    for key in [k for k in auths if _key_host(str(k)) == registry]:
        del auths[key]
    auths[_key_for(registry)] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    try:
        _write(path, data)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err}", path=str(path)) from err
    return path


def remove_credentials(registry: str) -> bool:
    """Forget ``registry``'s credentials in docker's config.json; whether there were any.

    Raises StorageError.
    """
    path = docker_config_path()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    doomed = [k for k in auths if _key_host(str(k)) == registry]
    for key in doomed:
        del auths[key]
    if doomed:
        try:
            _write(path, data)
        except OSError as err:
            raise StorageError(f"cannot write {path}: {err}", path=str(path)) from err
    return bool(doomed)


__all__ = ["docker_config_path", "auth_files", "find_credentials", "save_credentials", "remove_credentials"]
