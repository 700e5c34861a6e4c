"""Registry credentials in the files Docker and podman keep them in.

Read, in order: docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``), then containers' ``auth.json``
(``$REGISTRY_AUTH_FILE``, else ``/run/containers/$UID/auth.json``, then
``~/.config/containers/auth.json``). Each holds ``{"auths": {"host[:port]":
{"auth": base64("user:password")}}}``. ``login`` and ``logout`` write docker's
file (0600, replaced atomically).

As Docker does, a credential helper named in docker's file for the registry
(``credHelpers: {"host": "NAME"}``, else ``credsStore: "NAME"``) keeps that
registry's credentials instead of the file: ``docker-credential-NAME get``
(the server's address on stdin, ``{"Username", "Secret"}`` JSON on stdout),
``store`` (that JSON, with ``ServerURL``, on stdin) and ``erase``. The file
then only lists the registry, with an empty entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from pylxcore.errors import RegistryError, StorageError
from pylxcore.transfer.registry.reference import DOCKER_HUB

# Docker Hub's key in docker's config.json.
_HUB_KEY = "https://index.docker.io/v1/"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a program name, never a path
_HELPER_TIMEOUT = 60.0  # seconds (a helper may ask a keyring that asks the user)
_NOT_FOUND = "credentials not found"  # what docker's helpers say of a registry they lack


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


def _helper(registry: str, config: dict[str, Any]) -> str | None:
    """The credential helper docker's ``config`` names for ``registry``, if any. Raises StorageError."""
    helpers = config.get("credHelpers") or {}
    name = None
    if isinstance(helpers, dict):
        name = next((v for k, v in helpers.items() if _key_host(str(k)) == registry), None)
    name = name or config.get("credsStore") or None
    if name is not None and not (isinstance(name, str) and _HELPER_NAME.fullmatch(name)):
        raise StorageError(f"invalid credential helper name {name!r} in {docker_config_path()}")
    return name


def _run_helper(name: str, action: str, data: str, registry: str) -> str:
    """``docker-credential-NAME ACTION`` with ``data`` on stdin; its stdout.

    Raises RegistryError when it cannot run or fails (its own message as the reason).
    """
    argv = [f"docker-credential-{name}", action]
    try:
        proc = subprocess.run(
            argv, input=data.encode(), capture_output=True, timeout=_HELPER_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        reason = f"cannot run {argv[0]}: {err}"
        raise RegistryError(
            f"credentials for {registry}: {reason}", registry=registry, reason=reason
        ) from err
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        reason = (out.strip() or proc.stderr.decode(errors="replace").strip())[
            :500
        ] or f"exit {proc.returncode}"
        raise RegistryError(
            f"credentials for {registry}: {argv[0]} {action} failed: {reason}",
            registry=registry,
            reason=reason,
        )
    return out


def _helper_get(name: str, registry: str) -> tuple[str, str] | None:
    """(username, password) the helper keeps for ``registry``, or None. Raises RegistryError."""
    try:
        out = _run_helper(name, "get", _key_for(registry), registry)
    except RegistryError as err:
        if _NOT_FOUND in err.reason.lower():
            return None
        raise
    try:
        answer = json.loads(out)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError) as err:
        reason = f"docker-credential-{name} get answered no Username and Secret"
        raise RegistryError(
            f"credentials for {registry}: {reason}", registry=registry, reason=reason
        ) from err
    if not isinstance(user, str) or not isinstance(secret, str) or not secret:
        return None
    if user == "<token>":  # an identity token (OAuth refresh token): not a password
        reason = f"docker-credential-{name} keeps an identity token, which pylxcore cannot use"
        raise RegistryError(f"credentials for {registry}: {reason}", registry=registry, reason=reason)
    return user, secret


def find_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) kept for ``registry`` (host[:port]), or None.

    Raises StorageError for an unreadable or malformed credentials file,
    RegistryError when a credential helper fails.
    """
    for i, path in enumerate(auth_files()):
        data = _read(path)
        helper = _helper(registry, data) if i == 0 else None
        if helper is not None:
            found = _helper_get(helper, registry)
            if found is not None:
                return found
            continue  # docker's file: the helper, not its empty entry, holds what there is
        auths = data.get("auths") or {}
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
    """Keep (username, password) for ``registry`` in docker's config.json (or the
    credential helper it names); return the file's path.

    Other entries and settings of the file stay. Raises StorageError,
    RegistryError (the credential helper failed).
    """
    path = docker_config_path()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = data["auths"] = {}
    for key in [k for k in auths if _key_host(str(k)) == registry]:
        del auths[key]
    helper = _helper(registry, data)
    if helper is not None:
        entry = {"ServerURL": _key_for(registry), "Username": username, "Secret": password}
        _run_helper(helper, "store", json.dumps(entry), registry)
        auths[_key_for(registry)] = {}  # as docker writes it: the helper has the secret
    else:
        auths[_key_for(registry)] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    try:
        _write(path, data)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err}", path=str(path)) from err
    return path


def remove_credentials(registry: str) -> bool:
    """Forget ``registry``'s credentials in docker's config.json (and its credential
    helper); whether there were any.

    Raises StorageError, RegistryError (the credential helper failed).
    """
    path = docker_config_path()
    data = _read(path)
    helper = _helper(registry, data)
    erased = False
    if helper is not None:
        try:
            _run_helper(helper, "erase", _key_for(registry), registry)
            erased = True
        except RegistryError as err:
            if _NOT_FOUND not in err.reason.lower():
                raise
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return erased
    doomed = [k for k in auths if _key_host(str(k)) == registry]
    for key in doomed:
        del auths[key]
    if doomed:
        try:
            _write(path, data)
        except OSError as err:
            raise StorageError(f"cannot write {path}: {err}", path=str(path)) from err
    return erased or bool(doomed)


__all__ = ["docker_config_path", "auth_files", "find_credentials", "save_credentials", "remove_credentials"]
