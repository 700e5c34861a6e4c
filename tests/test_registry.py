"""Registries (SPEC section 8): pull and push against Debian's docker-registry,
checked with skopeo and podman; credentials, TLS, and every failure typed.

Each test starts its own registry on 127.0.0.1 (tests/registry.py), and
stops it by pid. Images are busybox-sized.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from pylxcore import Engine, Image, ImageNotFound, RegistryError, SpecError
from pylxcore.transfer.registry.client import _parse_challenge
from pylxcore.transfer.registry.reference import parse_reference
from tests.registry import (
    PASSWORD,
    USER,
    Podman,
    Registry,
    busybox_rootfs_tar,
    podman,
    registry,
    skopeo,
    token_server,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials files of the test's own: never the user's docker or podman logins."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    (tmp_path / "auth.json").write_text('{"auths": {}}')
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def store_is_empty(engine: Engine) -> None:
    store = engine.store
    assert list(store.tmp_dir.iterdir()) == [], "staging left behind"
    assert list(store.layers_dir.iterdir()) == [], "layers left behind"
    assert list(store.images_dir.iterdir()) == [], "image records left behind"
    assert store.read_refs() == {}


def inspect(ref: str, *extra: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(skopeo("inspect", *extra, f"docker://{ref}"))
    return result


def raw_manifest(ref: str, *extra: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(skopeo("inspect", "--raw", *extra, f"docker://{ref}"))
    return result


# ---------------------------------------------------------------------------
# Pure logic: references and challenges
# ---------------------------------------------------------------------------


def test_references_normalize_as_docker_does() -> None:
    hexd = "ab" * 32
    cases = {
        "busybox": ("docker.io", "library/busybox", "latest", None, "busybox:latest"),
        "team/app:2": ("docker.io", "team/app", "2", None, "team/app:2"),
        "docker://index.docker.io/alpine:3.20": ("docker.io", "library/alpine", "3.20", None, "alpine:3.20"),
        "localhost:5000/team/w:1.0": ("localhost:5000", "team/w", "1.0", None, "localhost:5000/team/w:1.0"),
        "localhost/web": ("localhost", "web", "latest", None, "localhost/web:latest"),
        f"quay.io/a/b@sha256:{hexd}": (
            "quay.io", "a/b", None, f"sha256:{hexd}", f"quay.io/a/b:sha256-{hexd}"
        ),
    }
    for text, (reg, repo, tag, digest, store_name) in cases.items():
        ref = parse_reference(text)
        assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.store_name) == (
            reg, repo, tag, digest, store_name
        ), text
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    for bad in ("Busybox", "a:b:c", "x@sha256:123", "x@md5:" + "0" * 32, "host:99999999/x"):
        with pytest.raises(SpecError):
            parse_reference(bad)


def test_challenges_parse() -> None:
    scheme, params = _parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }
    assert _parse_challenge('Basic realm="pylxcore-test"') == ("basic", {"realm": "pylxcore-test"})


def test_docker_base_is_validated() -> None:
    assert Image("a:1", base="docker://localhost:5000/x:1").base == "docker://localhost:5000/x:1"
    for bad in ("docker://Bad", "docker://x@sha256:00"):
        with pytest.raises(SpecError) as info:
            Image("a:1", base=bad)
        assert info.value.key == "base"


# ---------------------------------------------------------------------------
# Round trips with real clients
# ---------------------------------------------------------------------------


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Registry]:
    with registry(tmp_path / "registry") as reg:
        yield reg


def build_app(engine: Engine, name: str = "app:1") -> None:
    engine.images.build(
        Image(
            name,
            base="busybox",
            layers=["mkdir -p /srv && echo 'hello from pylxcore' > /srv/hello"],
            cmd=["cat", "/srv/hello"],
        )
    )


@pytest.mark.slow
def test_push_is_read_by_skopeo_and_run_by_podman(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    build_app(engine)
    dest = f"{plain.host}/team/app:1"
    digest = engine.images.push("app:1", dest)
    seen = inspect(dest, "--tls-verify=false")
    assert seen["Digest"] == digest
    manifest = raw_manifest(dest, "--tls-verify=false")
    assert seen["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert len(seen["Layers"]) == 2
    with podman(tmp_path / "podman") as pod:
        pod.run("pull", "--tls-verify=false", dest)
        out = pod.run("run", "--rm", "--network", "none", *ULIMITS, dest)
    assert out == "hello from pylxcore\n"
    # A second push sends nothing: every blob is there (HEAD), only the manifest goes again.
    puts = len(plain.requests("PUT", "uploads"))
    assert engine.images.push("app:1", dest) == digest
    assert len(plain.requests("PUT", "uploads")) == puts


ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def foreign_images(pod: Podman, reg: Registry, tmp_path: Path) -> tuple[str, str]:
    """Two images podman makes and pushes: a busybox base, and an app on it with one more layer."""
    base = f"{reg.host}/foreign/base:1"
    app = f"{reg.host}/foreign/app:1"
    tar = busybox_rootfs_tar(tmp_path / "rootfs.tar")
    pod.run("import", "--change", "CMD [\"sh\"]", str(tar), base)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from podman\n")
    (ctx / "Containerfile").write_text(
        f"FROM {base}\nCOPY hello.txt /hello.txt\nENTRYPOINT [\"cat\"]\nCMD [\"/hello.txt\"]\n"
    )
    pod.run("build", "--pull=never", "-t", app, "-f", str(ctx / "Containerfile"), str(ctx))
    for ref in (base, app):
        pod.run("push", "--tls-verify=false", ref)
    return base, app


@pytest.mark.slow
def test_foreign_image_pull_run_push_back(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    with podman(tmp_path / "podman") as pod:
        base, app = foreign_images(pod, plain, tmp_path)
    base_layers = inspect(base, "--tls-verify=false")["Layers"]
    app_layers = inspect(app, "--tls-verify=false")["Layers"]
    assert app_layers[: len(base_layers)] == base_layers and len(app_layers) == len(base_layers) + 1

    # The base first; then the app downloads only its own layer (and its config).
    gets = len(plain.requests("GET"))
    engine.images.pull(base)
    assert len(plain.requests("GET")) - gets == len(base_layers) + 1
    gets = len(plain.requests("GET"))
    image = engine.images.pull(app)
    fetched = plain.requests("GET")[gets:]
    assert len(fetched) == 2, fetched
    assert any(path.endswith(app_layers[-1]) for path in fetched)
    assert image.tags == (app,)

    result = engine.containers.run(app, remove=True)
    assert (result.exit_code, result.output) == (0, b"hello from podman\n")

    # Back under another name: the same layer digests, every layer mounted from the
    # repository it came from; only the config (pylxcore's own rendering) is uploaded.
    puts = len(plain.requests("PUT", "uploads"))
    engine.images.push(app, f"{plain.host}/copy/app:2")
    sent = plain.requests("PUT", "uploads")[puts:]
    config = raw_manifest(f"{plain.host}/copy/app:2", "--tls-verify=false")["config"]["digest"]
    assert len(sent) <= 1 and all(config.replace(":", "%3A") in path for path in sent), sent
    assert inspect(f"{plain.host}/copy/app:2", "--tls-verify=false")["Layers"] == app_layers
    mounts = [p for p in plain.requests("POST", "uploads") if p.startswith("/v2/copy/app/") and "mount=" in p]
    assert len(mounts) >= len(app_layers), "no cross-repository mount was asked"


def test_only_new_layers_are_pushed(engine: Engine, plain: Registry) -> None:
    build_app(engine, "app:1")
    engine.images.build(Image("app:2", base="image:app:1", layers=["echo two > /srv/two"]))
    engine.images.push("app:1", f"{plain.host}/team/app:1")
    before = plain.requests("PUT", "uploads")
    engine.images.push("app:2", f"{plain.host}/team/app:2")
    sent = plain.requests("PUT", "uploads")[len(before) :]
    # Its own layer and its config; the two base layers are there already.
    assert len(sent) == 2, sent
    layers = inspect(f"{plain.host}/team/app:2", "--tls-verify=false")["Layers"]
    assert layers[:2] == inspect(f"{plain.host}/team/app:1", "--tls-verify=false")["Layers"]


def test_docker_base_is_pulled_once(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    build_app(engine, "app:1")
    engine.images.push("app:1", f"{plain.host}/team/base:1")
    other = Engine(root=tmp_path / "other")
    image = Image("derived:1", base=f"docker://{plain.host}/team/base:1", layers=["echo more >> /srv/hello"])
    other.images.build(image)
    manifests = len(plain.requests("GET", "manifests"))
    assert manifests >= 1
    built = other.images.build(Image.from_yaml(image.to_yaml()))
    assert len(plain.requests("GET", "manifests")) == manifests, "the base was fetched again"
    assert built.tags == ("derived:1",)
    result = other.containers.run("derived:1", ["cat", "/srv/hello"], remove=True)
    assert result.output == b"hello from pylxcore\nmore\n"
    other.close()


# ---------------------------------------------------------------------------
# Credentials, TLS
# ---------------------------------------------------------------------------


def cli(*args: str, stdin: str = "", root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "pylxcore", "--root", str(root), *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_login_checks_and_keeps_credentials(engine: Engine, tmp_path: Path) -> None:
    build_app(engine)
    with registry(tmp_path / "registry", auth=True) as reg:
        dest = f"{reg.host}/team/app:1"
        with pytest.raises(RegistryError) as info:
            engine.images.push("app:1", dest)
        assert info.value.status == 401 and "login" in str(info.value)
        with pytest.raises(RegistryError) as info:
            engine.login(reg.host, USER, "wrong")
        assert info.value.status == 401 and info.value.registry == reg.host
        config = tmp_path / "docker-config" / "config.json"
        assert not config.exists()

        # The command line: the password from stdin, into docker's config.json.
        done = cli("login", "-u", USER, "--password-stdin", reg.host, stdin=PASSWORD + "\n", root=engine.root)
        assert done.returncode == 0, done.stderr
        entry = json.loads(config.read_text())["auths"][reg.host]
        assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"
        assert oct(config.stat().st_mode & 0o777) == "0o600"

        done = cli("push", "app:1", dest, root=engine.root)
        assert done.returncode == 0, done.stderr
        assert inspect(dest, "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}")["Digest"] in done.stdout
        done = cli("pull", dest, root=tmp_path / "cli-root")
        assert done.returncode == 0, done.stderr
        assert Engine(root=tmp_path / "cli-root").images.get(dest).tags == (dest,)

        done = cli("logout", reg.host, root=engine.root)
        assert done.returncode == 0 and "Removed" in done.stdout, done.stderr
        assert json.loads(config.read_text())["auths"] == {}
        assert engine.logout(reg.host) is False
        with pytest.raises(RegistryError):
            engine.images.pull(dest)
        # containers' auth.json is read too.
        auth = {"auths": {reg.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
        (tmp_path / "auth.json").write_text(json.dumps(auth))
        other = Engine(root=tmp_path / "other")
        assert other.images.pull(dest).tags == (dest,)
        other.close()


def test_tls_is_verified(engine: Engine, tmp_path: Path) -> None:
    build_app(engine)
    with registry(tmp_path / "registry", tls=True) as reg:
        assert reg.ca is not None and reg.certs_dir is not None
        dest = f"{reg.host}/team/app:1"
        with pytest.raises(RegistryError) as info:
            engine.images.push("app:1", dest)
        assert "certificate" in info.value.reason
        engine.images.push("app:1", dest, ca_file=reg.ca)
        layers = inspect(dest, "--cert-dir", str(reg.certs_dir))["Layers"]
        assert len(layers) == 2
        other = Engine(root=tmp_path / "other")
        with pytest.raises(RegistryError) as info:
            other.images.pull(dest)
        assert "certificate" in info.value.reason
        store_is_empty(other)
        assert other.images.pull(dest, ca_file=reg.ca).tags == (dest,)
        # insecure=True: unverified TLS, as Docker's insecure-registries.
        assert Engine(root=tmp_path / "third").images.pull(dest, insecure=True).tags == (dest,)
        other.close()


# ---------------------------------------------------------------------------
# Failures: typed, and nothing left in the store
# ---------------------------------------------------------------------------


def blob_data(reg: Registry, digest: str) -> Path:
    hexd = digest[7:]
    return reg.dir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


def test_failures_are_typed_and_leave_nothing(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    builder = Engine(root=tmp_path / "builder")
    build_app(builder)
    builder.images.push("app:1", f"{plain.host}/team/app:1")
    builder.close()

    with pytest.raises(ImageNotFound):
        engine.images.pull(f"{plain.host}/team/app:nope")
    with pytest.raises(ImageNotFound):
        engine.images.pull(f"{plain.host}/team/nothing:1")
    with pytest.raises(ImageNotFound):
        engine.images.pull(f"{plain.host}/team/app@sha256:" + "0" * 64)
    with pytest.raises(ImageNotFound):
        engine.images.push("nothing:1", f"{plain.host}/team/nothing:1")
    store_is_empty(engine)

    # Nothing listens on a fresh port: refused.
    from tests.registry import free_port

    with pytest.raises(RegistryError) as info:
        engine.images.pull(f"127.0.0.1:{free_port()}/team/app:1")
    assert "refused" in info.value.reason.lower()
    store_is_empty(engine)

    # A layer whose bytes changed in the registry's storage: the digest check stops it.
    layers = inspect(f"{plain.host}/team/app:1", "--tls-verify=false")["Layers"]
    data = blob_data(plain, layers[-1])
    good = data.read_bytes()
    data.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    with pytest.raises(RegistryError) as info:
        engine.images.pull(f"{plain.host}/team/app:1")
    assert "digest mismatch" in info.value.reason
    store_is_empty(engine)
    # The same bytes plus more: stopped at the manifest's size.
    data.write_bytes(good + b"x" * 4096)
    with pytest.raises(RegistryError) as info:
        engine.images.pull(f"{plain.host}/team/app:1")
    assert "more than" in info.value.reason
    store_is_empty(engine)
    data.write_bytes(good)
    assert engine.images.pull(f"{plain.host}/team/app:1").tags == (f"{plain.host}/team/app:1",)


def test_bearer_token_auth(engine: Engine, tmp_path: Path) -> None:
    """A registry behind a token service (as Docker Hub): the challenge's realm
    gives a token for the scope, fetched with the kept credentials."""
    build_app(engine)
    with token_server(tmp_path / "token") as tokens, registry(tmp_path / "registry", token=tokens) as reg:
        dest = f"{reg.host}/team/app:1"
        with pytest.raises(RegistryError) as info:
            engine.images.push("app:1", dest)
        assert info.value.status == 401
        with pytest.raises(RegistryError) as info:
            engine.login(reg.host, USER, "wrong")
        assert "incorrect username or password" in info.value.reason
        engine.login(reg.host, USER, PASSWORD)
        engine.images.push("app:1", dest)
        assert "repository:team/app:pull,push" in tokens.scopes
        other = Engine(root=tmp_path / "other")
        assert other.images.pull(dest).tags == (dest,)
        other.close()
        assert inspect(dest, "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}")["Layers"]


@pytest.mark.slow
def test_index_resolves_to_the_platform(engine: Engine, plain: Registry, tmp_path: Path) -> None:
    """A multi-platform image podman pushes: this host's entry by default, another by platform=."""
    import tarfile

    multi = f"{plain.host}/team/multi:1"
    with podman(tmp_path / "podman") as pod:
        pod.run("manifest", "create", "localhost/multi-list")
        for arch in ("arm64", "amd64"):
            tar = busybox_rootfs_tar(tmp_path / f"{arch}.tar")
            with tarfile.open(tar, "a") as t:  # a file that tells the entries apart
                member = tarfile.TarInfo("etc/arch")
                data = f"{arch}\n".encode()
                member.size, member.mode = len(data), 0o644
                t.addfile(member, io.BytesIO(data))
            pod.run("import", "--arch", arch, "--os", "linux", str(tar), f"localhost/multi-{arch}:1")
            pod.run("manifest", "add", "localhost/multi-list", f"containers-storage:localhost/multi-{arch}:1")
        pod.run("manifest", "push", "--all", "--tls-verify=false", "localhost/multi-list", f"docker://{multi}")
    index = raw_manifest(multi, "--tls-verify=false")
    assert len(index["manifests"]) == 2

    image = engine.images.pull(multi)
    assert engine.containers.run(image.id, ["cat", "/etc/arch"], remove=True).stdout == b"amd64\n"
    other = Engine(root=tmp_path / "other")
    arm = other.images.pull(multi, platform="linux/arm64")
    assert arm.id != image.id
    layer = other.store.layer_dir(arm.layer_keys[-1]) / "fs" / "etc" / "arch"
    assert layer.read_text() == "arm64\n"
    with pytest.raises(RegistryError) as info:
        other.images.pull(multi, platform="linux/s390x")
    assert "linux/amd64" in str(info.value) and "linux/arm64" in str(info.value)
    with pytest.raises(SpecError):
        other.images.pull(multi, platform="s390x")
    other.close()
