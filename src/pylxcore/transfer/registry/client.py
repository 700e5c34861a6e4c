"""A Registry API v2 client on the standard library: TLS, token and basic auth.

TLS is verified by default: against the system's CAs, a ``ca_file=`` and the
per-registry directories Docker and podman read (``/etc/docker/certs.d/HOST/``,
``/etc/containers/certs.d/HOST/``: ``*.crt`` CAs, ``*.cert``/``*.key`` client
certificates). Plain HTTP is used only for a loopback registry that does not
speak TLS, or for a registry the caller names insecure (which also skips
certificate checks, as Docker's ``insecure-registries`` does). Every failure
raises RegistryError carrying the registry's own message, except a missing
repository or manifest, which is ImageNotFound.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import ssl
import urllib.parse
from pathlib import Path
from typing import IO, Any

from pylxcore.errors import ImageNotFound, RegistryError

CERTS_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
MAX_MANIFEST = 4 << 20  # Docker's own limit for a manifest or index
MAX_ERROR_BODY = 64 << 10
_MAX_REDIRECTS = 5
_TIMEOUT = 60.0  # seconds a connect or a read may take
_BLOCK = 1 << 20  # bytes per send of an uploaded blob
_NOT_FOUND_CODES = ("NAME_UNKNOWN", "MANIFEST_UNKNOWN", "NOT_FOUND", "TAG_INVALID")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (host[:port], brackets allowed) names this machine."""
    name = urllib.parse.urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_from_env(registry: str) -> bool:
    """Whether ``$PYLXCORE_INSECURE_REGISTRIES`` (comma-separated host[:port]) names ``registry``."""
    names = os.environ.get("PYLXCORE_INSECURE_REGISTRIES", "")
    return registry in [n.strip() for n in names.split(",") if n.strip()]


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """(scheme, params) of a ``WWW-Authenticate`` header, e.g. ("bearer", {"realm": …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'([A-Za-z_]+)="([^"]*)"', rest)}
    return scheme.lower(), params


def _error_text(body: bytes) -> str:
    """The registry's own message from an error body ({"errors": [{code, message}]})."""
    try:
        errors = json.loads(body).get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
        if text:
            return text
    except (ValueError, AttributeError, TypeError):
        pass
    return body[:300].decode("utf-8", "replace").strip()


def _error_codes(body: bytes) -> list[str]:
    try:
        return [str(e.get("code")) for e in json.loads(body).get("errors") or []]
    except (ValueError, AttributeError, TypeError):
        return []


class RegistryClient:
    """One registry (``host[:port]``), with its credentials and TLS settings.

    ``credentials`` is (username, password) or None; ``insecure`` allows plain
    HTTP and unverified TLS; ``ca_file`` adds a CA bundle to trust.
    """

    def __init__(
        self,
        registry: str,
        *,
        api_host: str | None = None,
        credentials: tuple[str, str] | None = None,
        insecure: bool = False,
        ca_file: str | os.PathLike[str] | None = None,
        certs_dirs: tuple[str, ...] = CERTS_DIRS,
    ) -> None:
        self.registry = registry
        self.host = api_host or registry
        self.credentials = credentials
        self.insecure = insecure or insecure_from_env(registry)
        self.plain_allowed = self.insecure or is_loopback(self.host)
        self.scheme: str | None = None  # decided by the first request
        self._tokens: dict[str, str] = {}
        self._basic = False  # the registry asked for basic auth
        self._tls = self._tls_context(ca_file, certs_dirs)

    # -- transport ------------------------------------------------------------

    def _tls_context(
        self, ca_file: str | os.PathLike[str] | None, certs_dirs: tuple[str, ...]
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            if ca_file is not None:
                ctx.load_verify_locations(cafile=os.fspath(ca_file))
            for top in certs_dirs:
                d = Path(top) / self.registry
                if not d.is_dir():
                    continue
                for crt in sorted(d.glob("*.crt")):
                    ctx.load_verify_locations(cafile=str(crt))
                for cert in sorted(d.glob("*.cert")):
                    ctx.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
        except (OSError, ssl.SSLError) as err:
            raise RegistryError(
                f"cannot load the TLS certificates for {self.registry}: {err}",
                registry=self.registry,
                reason=str(err),
            ) from err
        return ctx

    def _fail(self, what: str, reason: str, status: int = 0) -> RegistryError:
        return RegistryError(f"{what}: {reason}", registry=self.registry, status=status, reason=reason)

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: Any = None
    ) -> http.client.HTTPResponse:
        """One HTTP exchange (the connection closes with the response). Raises RegistryError."""
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(netloc, timeout=_TIMEOUT, context=self._tls, blocksize=_BLOCK)
        elif parts.scheme == "http" and (self.plain_allowed or self.insecure):
            conn = http.client.HTTPConnection(netloc, timeout=_TIMEOUT, blocksize=_BLOCK)
        else:
            raise self._fail(f"refusing {url}", "plain HTTP is only used for loopback or insecure registries")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request(method, path, body=body, headers={**headers, "Connection": "close"})
            return conn.getresponse()
        except ssl.SSLCertVerificationError as err:
            conn.close()
            raise self._fail(f"TLS verification of {netloc} failed", err.verify_message or str(err)) from err
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise self._fail(
                f"cannot reach registry {netloc} ({method} {parts.path})", str(err) or type(err).__name__
            ) from err

    def _base(self) -> str:
        """``https://host`` or, for a loopback/insecure registry that speaks no TLS, ``http://host``."""
        if self.scheme is None:
            try:
                self._send("GET", f"https://{self.host}/v2/", {}).close()
                self.scheme = "https"
            except RegistryError as err:
                cause = err.__cause__
                tls_only = isinstance(cause, ssl.SSLError) and not isinstance(
                    cause, ssl.SSLCertVerificationError
                )
                if not (self.plain_allowed and (tls_only or isinstance(cause, ConnectionResetError))):
                    raise
                self.scheme = "http"
        return f"{self.scheme}://{self.host}"

    # -- auth -----------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._basic and self.credentials:
            user, password = self.credentials
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        token = self._tokens.get(scope)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _authenticate(self, challenge: str, scope: str, reason: str) -> None:
        """Answer a 401: remember basic auth, or fetch a bearer token. Raises RegistryError."""
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if not self.credentials:
                raise self._fail(f"{self.registry} needs a login", reason or "authentication required", 401)
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise self._fail(
                f"{self.registry} asks for unsupported authentication {challenge!r}", reason, 401
            )
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme != "https" and not (
            realm.scheme == "http" and (self.insecure or is_loopback(realm.netloc))
        ):
            raise self._fail(f"{self.registry}'s token service is not HTTPS", params["realm"], 401)
        # The scope this request needs and the one the registry named (a HEAD's
        # challenge says "pull", but the upload that follows needs "push" too).
        scopes = dict.fromkeys(x for x in (scope, params.get("scope", "")) if x)
        query = [("service", params.get("service", "")), *(("scope", x) for x in scopes)]
        url = params["realm"] + ("&" if realm.query else "?") + urllib.parse.urlencode(query)
        headers: dict[str, str] = {}
        if self.credentials:
            user, password = self.credentials
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        resp = self._send("GET", url, headers)
        body = resp.read(MAX_MANIFEST)
        resp.close()
        if resp.status != 200:
            raise self._fail(
                f"{self.registry}'s token service refused", _error_text(body) or resp.reason, resp.status
            )
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError) as err:
            raise self._fail(f"{self.registry}'s token service answered", "not a token", resp.status) from err
        if not isinstance(token, str) or not token:
            raise self._fail(f"{self.registry}'s token service answered", "no token", resp.status)
        self._tokens[scope] = token

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str = "",
        headers: dict[str, str] | None = None,
        body: IO[bytes] | bytes | None = None,
    ) -> http.client.HTTPResponse:
        """Send ``method path`` (path from ``/v2/…``, or an absolute URL the registry gave),
        authenticating as asked and following redirects of GET/HEAD. The caller
        reads and closes the response. Raises RegistryError (auth, transport)."""
        url = path if "://" in path else self._base() + path
        rounds = 0  # of authentication
        for _ in range(_MAX_REDIRECTS + 3):
            same_host = urllib.parse.urlsplit(url).netloc == self.host
            hdrs = {**(headers or {}), **(self._auth_header(scope) if same_host else {})}
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            resp = self._send(method, url, hdrs, body)
            if resp.status == 401 and same_host:
                text = _error_text(resp.read(MAX_ERROR_BODY))
                resp.close()
                challenge = resp.getheader("WWW-Authenticate") or ""
                # A token may be stale, or lack a scope: one more round, then it is a refusal.
                again = rounds == 0 or (rounds == 1 and "insufficient_scope" in challenge)
                if "Authorization" in hdrs and (self._basic or not again):
                    what = "refused the credentials" if self.credentials else "needs a login"
                    raise self._fail(f"{self.registry} {what}", text or "unauthorized", 401)
                self._authenticate(challenge, scope, text)
                rounds += 1
                continue
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = resp.getheader("Location") or ""
                resp.close()
                url = urllib.parse.urljoin(url, location)
                continue
            return resp
        raise self._fail(f"{method} {path}", "too many redirects or authentication rounds")

    def check(self, resp: http.client.HTTPResponse, what: str, ok: tuple[int, ...], name: str = "") -> None:
        """Raise for an unexpected status: ImageNotFound for a missing repository or
        manifest, else RegistryError with the registry's message. Closes ``resp`` then."""
        if resp.status in ok:
            return
        body = resp.read(MAX_ERROR_BODY)
        resp.close()
        text = _error_text(body) or resp.reason
        if resp.status == 404 and (not _error_codes(body) or set(_error_codes(body)) & set(_NOT_FOUND_CODES)):
            raise ImageNotFound(f"{what}: {text}", name=name)
        if resp.status in (401, 403):
            raise self._fail(f"{what}: access denied", text, resp.status)
        raise self._fail(what, f"HTTP {resp.status} {text}", resp.status)

    def ping(self) -> None:
        """Check the registry answers and the credentials are good. Raises RegistryError."""
        resp = self.request("GET", "/v2/")
        self.check(resp, f"registry {self.registry}", (200,))
        resp.close()

    # -- manifests and blobs ---------------------------------------------------

    def get_manifest(self, repo: str, reference: str, accept: tuple[str, ...]) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest or index, its digest checked.

        Raises ImageNotFound (no such repository or tag), RegistryError.
        """
        what = f"manifest {self.registry}/{repo}:{reference}".replace(":sha256:", "@sha256:")
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            scope=f"repository:{repo}:pull",
            headers={"Accept": ", ".join(accept)},
        )
        self.check(resp, what, (200,), name=f"{self.registry}/{repo}:{reference}")
        try:
            body = resp.read(MAX_MANIFEST + 1)
        except (OSError, http.client.HTTPException) as err:
            raise self._fail(f"reading {what}", str(err)) from err
        finally:
            resp.close()
        if len(body) > MAX_MANIFEST:
            raise self._fail(what, f"larger than {MAX_MANIFEST} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        claimed = reference if reference.startswith("sha256:") else resp.getheader("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise self._fail(
                what, f"digest mismatch: the registry promised {claimed}, the content is {digest}"
            )
        media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return body, media, digest

    def open_blob(self, repo: str, digest: str) -> http.client.HTTPResponse:
        """A response streaming blob ``digest``. Raises ImageNotFound, RegistryError."""
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull")
        self.check(resp, f"blob {digest} of {self.registry}/{repo}", (200,), name=f"{self.registry}/{repo}")
        return resp

    def has_blob(self, repo: str, digest: str) -> bool:
        """Whether the repository holds blob ``digest`` (HEAD). Raises RegistryError."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull,push")
        resp.read()
        resp.close()
        if resp.status in (200, 404):
            return resp.status == 200
        self.check(resp, f"blob {digest} of {self.registry}/{repo}", (200,))
        return False

    def _upload_url(self, resp: http.client.HTTPResponse) -> str:
        location = resp.getheader("Location")
        resp.read()
        resp.close()
        if not location:
            raise self._fail(f"{self.registry} started an upload", "without a Location")
        return urllib.parse.urljoin(self._base() + "/", location)

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> str | None:
        """Mount ``digest`` from ``source_repo`` of the same registry; None when mounted,
        else the URL of an upload session to use instead. Raises RegistryError."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_repo})
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?{query}",
            scope=f"repository:{repo}:pull,push",
            headers={"Content-Length": "0"},
        )
        if resp.status == 201:
            resp.read()
            resp.close()
            return None
        self.check(resp, f"starting an upload to {self.registry}/{repo}", (202,))
        return self._upload_url(resp)

    def upload_blob(self, repo: str, digest: str, size: int, data: IO[bytes], url: str | None = None) -> None:
        """Upload blob ``digest`` (``size`` bytes read from ``data``) in one PUT. Raises RegistryError."""
        scope = f"repository:{repo}:pull,push"
        if url is None:
            resp = self.request(
                "POST", f"/v2/{repo}/blobs/uploads/", scope=scope, headers={"Content-Length": "0"}
            )
            self.check(resp, f"starting an upload to {self.registry}/{repo}", (202,))
            url = self._upload_url(resp)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        resp = self.request(
            "PUT",
            url,
            scope=scope,
            body=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        self.check(resp, f"uploading blob {digest} to {self.registry}/{repo}", (201,))
        resp.read()
        resp.close()

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        """Put a manifest under ``tag``; return its digest (checked against the
        registry's). Raises RegistryError."""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            scope=f"repository:{repo}:pull,push",
            body=body,
            headers={"Content-Type": media_type, "Content-Length": str(len(body))},
        )
        self.check(resp, f"pushing the manifest of {self.registry}/{repo}:{tag}", (201,))
        resp.read()
        resp.close()
        claimed = resp.getheader("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise self._fail(
                f"pushing {self.registry}/{repo}:{tag}", f"the registry stored {claimed}, not {digest}"
            )
        return digest


__all__ = ["CERTS_DIRS", "MAX_MANIFEST", "RegistryClient", "is_loopback", "insecure_from_env"]
