"""docker credential helpers (``credsStore``, ``credHelpers`` in docker's
config.json): login, pull, push and logout through ``docker-credential-NAME``,
against Debian's docker-registry with htpasswd auth started by the test.

The helper is a tiny fake of the protocol (pure protocol logic: it keeps its
secrets in a JSON file instead of a keyring), written by the test on a PATH
of its own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pylxcore import Engine, RegistryError
from tests.registry import PASSWORD, USER, registry
from tests.test_registry import _own_credentials, build_app  # noqa: F401  (a fixture)

FAKE_HELPER = """#!{python}
import json, os, sys
store = os.environ["PXFAKE_STORE"]
data = json.load(open(store)) if os.path.exists(store) else {{}}
action, given = sys.argv[1], sys.stdin.read()
with open(store + ".log", "a") as log:
    log.write(action + " " + (json.loads(given)["ServerURL"] if action == "store" else given.strip()) + "\\n")
if action == "store":
    entry = json.loads(given)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
elif given.strip() not in data:
    print("credentials not found in native keychain")
    sys.exit(1)
elif action == "get":
    user, secret = data[given.strip()]
    print(json.dumps({{"ServerURL": given.strip(), "Username": user, "Secret": secret}}))
elif action == "erase":
    del data[given.strip()]
json.dump(data, open(store, "w"))
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docker-credential-pxfake on PATH; returns the JSON file it keeps secrets in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-pxfake"
    script.write_text(FAKE_HELPER.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PXFAKE_STORE", str(tmp_path / "secrets.json"))
    return tmp_path / "secrets.json"


def docker_config(tmp_path: Path, settings: dict[str, object]) -> Path:
    path = tmp_path / "docker-config" / "config.json"  # $DOCKER_CONFIG, set by _own_credentials
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(settings))
    return path


def test_creds_store_keeps_the_secret(engine: Engine, helper: Path, tmp_path: Path) -> None:
    config = docker_config(tmp_path, {"credsStore": "pxfake", "experimental": "enabled"})
    build_app(engine)
    with registry(tmp_path / "registry", auth=True) as reg:
        engine.login(reg.host, USER, PASSWORD)
        # The helper has the secret; docker's file only lists the registry (as docker writes it).
        assert json.loads(helper.read_text()) == {reg.host: [USER, PASSWORD]}
        kept = json.loads(config.read_text())
        assert kept == {"credsStore": "pxfake", "experimental": "enabled", "auths": {reg.host: {}}}
        assert PASSWORD not in config.read_text()

        dest = f"{reg.host}/team/app:1"
        engine.images.push("app:1", dest)
        other = Engine(root=tmp_path / "other")
        try:
            assert other.images.pull(dest).tags == (dest,)
        finally:
            other.close()
        assert f"get {reg.host}" in (tmp_path / "secrets.json.log").read_text()

        assert engine.logout(reg.host) is True
        assert json.loads(helper.read_text()) == {}
        assert json.loads(config.read_text())["auths"] == {}
        with pytest.raises(RegistryError) as info:
            engine.images.push("app:1", dest)
        assert info.value.status == 401
        assert engine.logout(reg.host) is False  # nothing left to forget


def test_cred_helpers_name_a_helper_per_registry(engine: Engine, helper: Path, tmp_path: Path) -> None:
    build_app(engine)
    with registry(tmp_path / "registry", auth=True) as reg:
        helper.write_text(json.dumps({reg.host: [USER, PASSWORD]}))
        # Its own helper for this registry, a helper that does not exist for the others.
        docker_config(tmp_path, {"credsStore": "pxmissing", "credHelpers": {reg.host: "pxfake"}})
        engine.images.push("app:1", f"{reg.host}/team/app:1")

        with pytest.raises(RegistryError) as info:
            engine.images.push("app:1", "127.0.0.1:1/team/app:1")
        assert "docker-credential-pxmissing" in info.value.reason

        # A helper's failure is the registry error, with the helper's own words.
        helper.write_text("not json")
        with pytest.raises(RegistryError) as info:
            engine.images.pull(f"{reg.host}/team/app:1")
        assert "docker-credential-pxfake get" in str(info.value)
