"""Token issuers for the access-token tests and benchmark.

``TestIssuer``: an in-process OIDC issuer on 127.0.0.1 serving a discovery document and
its JWKS over real HTTP (a thread), signing tokens with joserfc. It counts the requests
it answers, can be stopped and started again on the same port (an outage) and can
publish new keys (a rotation).

``start_idp``: the demo's real OIDC provider (gpuaf/demo/idp.mjs, npm oidc-provider)
with JWT access tokens switched on, on a free port; ``RealIdp.client_token`` gets a token
with client_credentials and ``RealIdp.user_token`` one of a user through the
authorization-code flow (PKCE) and the provider's login form, with plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gpuaf.demo.supervisor import DEMO_USERS, IDP_SCRIPT, NODE_MODULES_ENV, find_node_modules
from support.stack import free_ports

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/jwks"


def new_key(kid: str, kind: str = "RSA") -> RSAKey | ECKey | OKPKey:
    """A private signing key: RSA (2048), EC P-256/384/521 ("EC", "EC-384"...) or Ed25519."""
    parameters = {"kid": kid, "use": "sig"}
    if kind == "RSA":
        return RSAKey.generate_key(2048, parameters=parameters)
    if kind.startswith("EC"):
        curve = {"EC": "P-256", "EC-384": "P-384", "EC-521": "P-521"}[kind]
        return ECKey.generate_key(curve, parameters=parameters)
    return OKPKey.generate_key("Ed25519", parameters=parameters)


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TestIssuer:
    __test__ = False  # not a test class, whatever its name

    def __init__(self, *, audience: str = "gpuaf", kids: tuple[str, ...] = ("key-1",)):
        self.audience = audience
        self.keys: dict[str, Any] = {kid: new_key(kid) for kid in kids}
        self.requests: Counter[str] = Counter()
        self.fail_with: int | None = None  # answer every request with this status
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"

    # --- the HTTP side -----------------------------------------------------------------
    def start(self) -> TestIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with issuer._lock:
                    issuer.requests[path] += 1
                status, body = issuer._answer(path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Close the port: clients get 'connection refused', as from an issuer that is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, path: str) -> tuple[int, dict]:
        if self.fail_with:
            return self.fail_with, {"error": "unavailable"}
        if path == DISCOVERY:
            return 200, {"issuer": self.url, "jwks_uri": self.url + JWKS}
        if path == JWKS:
            with self._lock:
                keys = [k.as_dict(private=False) for k in self.keys.values()]
            return 200, {"keys": keys}
        return 404, {"error": "not found"}

    @property
    def key_fetches(self) -> int:
        return self.requests[JWKS]

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> TestIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- keys and tokens ----------------------------------------------------------------
    def add_key(self, kid: str, kind: str = "RSA") -> None:
        with self._lock:
            self.keys[kid] = new_key(kid, kind)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """IAM-like claims of alice, valid for an hour; a change to None removes the claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "wlcg.ver": "1.0",
            "iss": self.url,
            "sub": "0c5d8a2e-alice",
            "aud": self.audience,
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_hex(8),
            "scope": "compute.read compute.create",
            "preferred_username": "alice",
            "wlcg.groups": ["/higgs"],
            "client_id": "gpuaf-tests",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kid: str | None = None,
        alg: str = "RS256",
        header: dict[str, Any] | None = None,
    ) -> str:
        """A token signed with key ``kid`` (default: the first); ``header`` overrides."""
        kid = kid or next(iter(self.keys))
        head = {"alg": alg, "kid": kid, "typ": "at+jwt", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, claims or self.claims(), self.keys[kid], algorithms=[alg])


# --- the real provider ---------------------------------------------------------------------
CLIENT = {"client_id": "gpuaf-tests", "client_secret": "tests-secret"}
READER = {"client_id": "gpuaf-reader", "client_secret": "reader-secret"}
REDIRECT = "http://127.0.0.1/callback"
_FORM = re.compile(r'<form[^>]*action="([^"]+)"', re.IGNORECASE)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.IGNORECASE)


@dataclass
class RealIdp:
    issuer: str
    audience: str
    proc: subprocess.Popen
    log: Path
    users: dict = field(default_factory=dict)

    def client_token(self, client: dict = CLIENT, scope: str = "compute.read") -> str:
        reply = httpx.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client["client_id"], client["client_secret"]),
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["access_token"]

    def user_token(self, username: str, scope: str = "openid compute.read") -> str:
        """Log in as ``username`` (any password) and trade the code for an access token."""
        verifier = secrets.token_urlsafe(48)
        challenge = b64(hashlib.sha256(verifier.encode()).digest())
        with httpx.Client(timeout=10) as client:
            page = client.get(
                f"{self.issuer}/auth",
                params={
                    "client_id": CLIENT["client_id"],
                    "response_type": "code",
                    "redirect_uri": REDIRECT,
                    "scope": scope,
                    "state": secrets.token_hex(8),
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                },
                follow_redirects=True,
            )
            action = _FORM.search(page.text)
            assert action, f"no login form at {page.url}: {page.text[:300]}"
            reply = client.post(
                urljoin(str(page.url), action[1]),
                data={**dict(_HIDDEN.findall(page.text)), "login": username, "password": "x"},
            )
            while not reply.headers.get("location", "").startswith(REDIRECT):
                assert reply.is_redirect, f"login stopped at {reply.url}: {reply.text[:300]}"
                reply = client.get(urljoin(str(reply.url), reply.headers["location"]))
            code = parse_qs(urlsplit(reply.headers["location"]).query)["code"][0]
            token = client.post(
                f"{self.issuer}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                auth=(CLIENT["client_id"], CLIENT["client_secret"]),
            )
        assert token.status_code == 200, token.text
        return token.json()["access_token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_idp(
    base: Path, *, audience: str = "gpuaf", ttl: int | None = None, users: dict = DEMO_USERS
) -> RealIdp:
    """The demo provider with IDP_JWT_AUDIENCE set: clients gpuaf-tests (every compute
    scope; client_credentials and authorization code) and gpuaf-reader (compute.read only)."""
    modules = find_node_modules()
    if modules is None:
        raise RuntimeError("node_modules/oidc-provider is missing: run `npm ci`")
    issuer = f"http://127.0.0.1:{free_ports(1)[0]}"
    clients = [
        {
            **CLIENT,
            "grant_types": ["authorization_code", "client_credentials"],
            "response_types": ["code"],
            "redirect_uris": [REDIRECT],
        },
        {
            **READER,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "scope": "compute.read",
        },
    ]
    env = {
        **os.environ,
        NODE_MODULES_ENV: str(modules),
        "IDP_ISSUER": issuer,
        "IDP_CLIENTS": json.dumps(clients),
        "IDP_USERS": json.dumps(users),
        "IDP_JWT_AUDIENCE": audience,
        **({"IDP_JWT_TTL": str(ttl)} if ttl else {}),
    }
    base.mkdir(parents=True, exist_ok=True)
    log = base / "idp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", str(IDP_SCRIPT)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    idp = RealIdp(issuer, audience, proc, log, users)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"idp.mjs exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(issuer + DISCOVERY, timeout=2).status_code == 200:
                return idp
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    idp.stop()
    raise RuntimeError(f"idp.mjs did not answer within 20 s: {log.read_text()}")
