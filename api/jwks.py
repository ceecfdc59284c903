"""Signing keys of trusted token issuers, fetched from their discovery documents and cached.

Keys are looked up by ``kid``. A key id the cache does not know triggers a refetch of the
issuer's keys, at most once per ``refetch_interval`` per issuer, whatever the outcome:
concurrent requests share that one fetch, and a burst of forged key ids cannot turn the
API into a load generator against the issuer. While the issuer is unreachable the keys
already cached keep working; the next allowed fetch picks up new keys when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

log = logging.getLogger("gpuaf.api.jwks")

PublicKey = RSAKey | ECKey | OKPKey
DISCOVERY = "/.well-known/openid-configuration"
FETCH_TIMEOUT_S = 5.0


class KeyUnavailable(Exception):
    """No key for this kid: ``reachable`` tells whether the issuer answered last time."""

    def __init__(self, reachable: bool):
        super().__init__("issuer reachable" if reachable else "issuer unreachable")
        self.reachable = reachable


@dataclass
class _IssuerKeys:
    keys: dict[str, PublicKey] = field(default_factory=dict)
    jwks_uri: str | None = None
    attempted_at: float | None = None
    reachable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeyCache:
    """Public signing keys per issuer (issuers are given without a trailing slash)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.http = http
        self.refetch_interval = refetch_interval
        self.clock = clock
        self._issuers: dict[str, _IssuerKeys] = {}

    async def key(self, issuer: str, kid: str) -> PublicKey:
        state = self._issuers.setdefault(issuer, _IssuerKeys())
        key = state.keys.get(kid)
        if key is not None:
            return key
        async with state.lock:  # one fetch at a time; those waiting see its result
            key = state.keys.get(kid)
            if key is None and self._may_fetch(state):
                await self._refresh(issuer, state)
                key = state.keys.get(kid)
        if key is None:
            raise KeyUnavailable(state.reachable)
        return key

    def _may_fetch(self, state: _IssuerKeys) -> bool:
        last = state.attempted_at
        return last is None or self.clock() - last >= self.refetch_interval

    async def _refresh(self, issuer: str, state: _IssuerKeys) -> None:
        state.attempted_at = self.clock()
        try:
            if state.jwks_uri is None:
                state.jwks_uri = await self._discover(issuer)
            keys = await self._fetch_keys(state.jwks_uri)
        except (httpx.HTTPError, ValueError) as exc:
            state.jwks_uri, state.reachable = None, False  # discover again next time
            log.warning("cannot fetch the signing keys of %s: %s", issuer, _describe(exc))
            return
        state.keys, state.reachable = keys, True
        log.info("fetched %d signing key(s) of %s", len(keys), issuer)

    async def _discover(self, issuer: str) -> str:
        doc = await self._get_json(issuer + DISCOVERY)
        if str(doc.get("issuer", "")).removesuffix("/") != issuer:
            raise ValueError("the discovery document names another issuer")
        uri = doc.get("jwks_uri")
        schemes = ("https://", "http://") if issuer.startswith("http://") else ("https://",)
        if not isinstance(uri, str) or not uri.startswith(schemes):
            raise ValueError("the discovery document has no usable jwks_uri")
        return uri

    async def _fetch_keys(self, uri: str) -> dict[str, PublicKey]:
        entries = (await self._get_json(uri)).get("keys")
        if not isinstance(entries, list):
            raise ValueError("the key set has no 'keys' list")
        keys: dict[str, PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid or entry.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # symmetric keys are never trusted, keys without kid never chosen
            try:
                key = JWKRegistry.import_key(entry)
            except (JoseError, ValueError, TypeError):
                continue
            if isinstance(key, PublicKey):
                keys[kid] = key
        return keys

    async def _get_json(self, url: str) -> dict:
        reply = await self.http.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        if reply.status_code != 200:
            raise ValueError(f"{url} answered HTTP {reply.status_code}")
        doc = reply.json()
        if not isinstance(doc, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return doc


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
