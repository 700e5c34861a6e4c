"""Peers for the registry tests: Debian's ``docker-registry`` (distribution 2.8)
on 127.0.0.1 with a free port and a storage dir of its own (plain, with
htpasswd basic auth, or with TLS from a throwaway CA made here with
``openssl``), and ``podman``/``skopeo`` with stores of their own.

Everything started here is stopped by its pid; nothing touches a system
registry, podman store or the host's certificates.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from tests.conftest import missing as missing_programs

REGISTRY_BIN = "/usr/bin/docker-registry"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
USER, PASSWORD = "pxuser", "pxsecret-1"


def require(*tools: str) -> None:
    """Fail (under CI=true) or skip when a peer program is missing."""
    missing = [t for t in tools if not shutil.which(t) and not os.path.exists(t)]
    if not missing:
        return
    hint = "apt-get install docker-registry apache2-utils skopeo podman runc"
    missing_programs(f"needs {', '.join(missing)} ({hint})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(workdir: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a throwaway CA and a cert for 127.0.0.1/localhost."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = workdir / "ca.key", workdir / "ca.crt"
    key, csr, crt = workdir / "server.key", workdir / "server.csr", workdir / "server.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "2",
         "-subj", "/CN=pylxcore test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True,
    )
    subprocess.run(["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    ext = workdir / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
         "-out", crt, "-days", "2", "-extfile", ext],
        check=True, capture_output=True,
    )
    return ca_crt, crt, key


class Registry:
    """A running docker-registry of our own: ``host`` is "127.0.0.1:PORT"."""

    def __init__(
        self, workdir: Path, *, auth: bool = False, tls: bool = False, token: TokenServer | None = None
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = self.dir / "registry.log"
        self.ca: Path | None = None
        self.certs_dir: Path | None = None  # a certs dir for skopeo/podman (holds ca.crt)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.dir / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
        ]
        if tls:
            self.ca, crt, key = make_ca(self.dir / "tls")
            self.certs_dir = self.dir / "certs.d"  # the CA alone (a *.key there is a client key)
            self.certs_dir.mkdir()
            shutil.copy(self.ca, self.certs_dir / "ca.crt")
            lines += ["  tls:", f"    certificate: {crt}", f"    key: {key}"]
        if auth:
            htpasswd = self.dir / "htpasswd"
            argv = ["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD]
            subprocess.run(argv, check=True, capture_output=True)
            lines += ["auth:", "  htpasswd:", "    realm: pylxcore-test", f"    path: {htpasswd}"]
        if token is not None:
            lines += [
                "auth:", "  token:", f"    realm: {token.realm}", f"    service: {TokenServer.SERVICE}",
                f"    issuer: {TokenServer.ISSUER}", f"    rootcertbundle: {token.cert}",
            ]
        config = self.dir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                # REGISTRY_* variables override its config (REGISTRY_AUTH_FILE would be auth.file).
                env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not listen: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def requests(self, method: str, kind: str = "blobs") -> list[str]:
        """The paths of successful ``method`` requests on ``kind`` (blobs,
        manifests, uploads) in the access log so far."""
        found = []
        for m in re.finditer(r'"(GET|HEAD|PUT|POST|PATCH) (\S+) HTTP/[\d.]+" (\d+)', self.log.read_text()):
            verb, path, status = m.groups()
            if verb == method and f"/{kind}/" in path and status.startswith("2"):
                found.append(path)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def registry(
    workdir: Path, *, auth: bool = False, tls: bool = False, token: TokenServer | None = None
) -> Iterator[Registry]:
    require(REGISTRY_BIN, "openssl", "htpasswd")
    reg = Registry(workdir, auth=auth, tls=tls, token=token)
    try:
        yield reg
    finally:
        reg.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token service as Docker Hub runs one (the registry's ``auth: token``):
    answers ``GET /token?service=&scope=`` with a JWT (RS256, signed with
    ``openssl``) granting the asked scopes to USER/PASSWORD. ``scopes`` lists
    what was asked; ``users`` who asked (None: anonymous)."""

    SERVICE = "pylxcore-test"
    ISSUER = "pylxcore-test-issuer"

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = workdir / "token.key", workdir / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
             "-out", self.cert, "-days", "2", "-subj", "/CN=pylxcore token issuer"],
            check=True, capture_output=True,
        )
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.scopes: list[str] = []
        self.users: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, req: http.server.BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
        user = None
        header = req.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) != (USER, PASSWORD):
                body = b'{"details": "incorrect username or password"}'
                req.send_response(401)
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
        access = []
        for scope in query.get("scope", []):
            self.scopes.append(scope)
            kind, name, actions = scope.split(":")
            if user is not None:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        self.users.append(user)
        now = int(time.time())
        claims = {"iss": self.ISSUER, "sub": user or "", "aud": self.SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        head = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing = f"{_b64url(json.dumps(head).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing.encode(),
                             check=True, capture_output=True).stdout
        body = json.dumps({"token": f"{signing}.{_b64url(sig)}", "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@contextlib.contextmanager
def token_server(workdir: Path) -> Iterator[TokenServer]:
    require("openssl")
    server = TokenServer(workdir)
    try:
        yield server
    finally:
        server.close()


class Podman:
    """podman (with runc) on a root of its own; its run root is short (< 50 chars: socket paths)."""

    def __init__(self, workdir: Path) -> None:
        require("podman", "runc", "skopeo")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runroot = Path(tempfile.mkdtemp(prefix="pxp-", dir="/tmp"))
        self.auth = self.dir / "auth.json"  # never the user's own credentials
        self.auth.write_text('{"auths": {}}')

    def argv(self, *args: str) -> list[str]:
        return [
            "podman", "--root", str(self.dir / "root"), "--runroot", str(self.runroot),
            "--tmpdir", str(self.dir / "libpod"), "--storage-driver", "vfs", "--runtime", "runc",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none", *args,
        ]

    def run(self, *args: str, input_: bytes | None = None, timeout: float = 180) -> str:
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(self.auth), "TMPDIR": str(self.dir / "tmp")}
        (self.dir / "tmp").mkdir(exist_ok=True)
        proc = subprocess.run(self.argv(*args), input=input_, capture_output=True, timeout=timeout,
                              env=env, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")[-1500:]
            raise AssertionError(f"podman {' '.join(args)} failed: {err}")
        return proc.stdout.decode()

    def close(self) -> None:
        for args in (("rm", "--all", "--force"), ("rmi", "--all", "--force")):
            with contextlib.suppress(Exception):
                self.run(*args, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


@contextlib.contextmanager
def podman(workdir: Path) -> Iterator[Podman]:
    peer = Podman(workdir)
    try:
        yield peer
    finally:
        peer.close()


def skopeo(*args: str, auth_file: Path | None = None, timeout: float = 120) -> str:
    """Run skopeo (its own auth file, never the user's); return stdout, raise on failure."""
    require("skopeo")
    env = dict(os.environ)
    if auth_file is not None:
        env["REGISTRY_AUTH_FILE"] = str(auth_file)
    proc = subprocess.run(["skopeo", *args], capture_output=True, timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")[-1500:]
        raise AssertionError(f"skopeo {' '.join(args)} failed: {err}")
    return proc.stdout.decode()


def busybox_rootfs_tar(path: Path) -> Path:
    """A tiny root filesystem tar: busybox-static as /bin/busybox with sh, cat, ls, echo, sleep."""
    import tarfile

    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        for tool in ("sh", "cat", "ls", "echo", "sleep", "true"):
            info = tarfile.TarInfo(f"bin/{tool}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return path
