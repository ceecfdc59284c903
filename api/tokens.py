"""Validation of IAM access tokens (JWT, WLCG profile) sent to the portal API.

Order of the checks, each refusal a :class:`TokenRefused` with a short ``reason``:
the header is parsed without trusting it (asymmetric algorithms only, ``kid`` required);
``iss`` is read from the unverified payload and must be a trusted issuer before any
network request; the issuer's key for ``kid`` comes from :mod:`gpuaf.api.jwks`; the
signature is verified with joserfc; then ``aud``, ``exp``, ``nbf`` and ``iat`` (with at
most ``token_leeway`` seconds of skew), the scopes and the groups. Groups are read
exactly from the first claim of ``groups_claims`` present in the token: ``wlcg.groups``
entries lose one leading "/", and a parent group is never inferred from a child. No
message, log line or exception carries the token itself.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import httpx
from joserfc import errors, jws
from joserfc.jwt import JWTClaimsRegistry

from gpuaf.api.jwks import KeyCache, KeyUnavailable
from gpuaf.errors import PublicError
from gpuaf.settings import IAMSettings

log = logging.getLogger("gpuaf.api.tokens")
# "EdDSA" is the name the WLCG profile and IAM use; RFC 9864 prefers "Ed25519"
warnings.filterwarnings("ignore", "EdDSA is deprecated", errors.SecurityWarning, "joserfc")

ALGORITHMS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512", "EdDSA", "Ed25519"),
)
COMPUTE_SCOPES = ("compute.read", "compute.create", "compute.modify", "compute.cancel")
MAX_TOKEN_CHARS = 16384

_TIME_CLAIMS = {  # claim -> (reason, message) when joserfc finds it invalid
    "aud": ("aud-wrong", "The token is meant for another service (wrong audience)."),
    "nbf": ("not-yet-valid", "The token is not valid yet: check the clocks."),
    "iat": ("iat-in-future", "The token was issued in the future: check the clocks."),
}


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    username: str
    issuer: str
    groups: tuple[str, ...]
    scopes: frozenset[str]
    expires_at: float
    claims: Mapping


class TokenRefused(PublicError):
    """A token the API does not accept: 401 when it is bad, 403 when it lacks a right."""

    status = 401

    def __init__(self, reason: str, message: str, *, status: int = 401):
        super().__init__(message, status=status, log_message=f"token refused ({reason})")
        self.reason = reason

    @property
    def www_authenticate(self) -> str:
        """Value of the WWW-Authenticate header of the refusal (RFC 6750)."""
        error = "insufficient_scope" if self.status == 403 else "invalid_token"
        return f'Bearer error="{error}", error_description="{self.reason}"'


def _malformed(what: str) -> TokenRefused:
    return TokenRefused("malformed", f"The token is not a valid JWT access token ({what}).")


class TokenValidator:
    def __init__(
        self,
        *,
        issuers: list[str],
        audience: str,
        leeway: int,
        groups_claims: list[str],
        keys: KeyCache,
        now: Callable[[], float] = time.time,
    ):
        if not 0 <= leeway <= 60:
            raise ValueError("token leeway must be between 0 and 60 seconds")
        self.issuers = frozenset(i.rstrip("/") for i in issuers)
        self.audience = audience
        self.groups_claims = tuple(groups_claims)
        self.keys = keys
        self._registry = jws.JWSRegistry(algorithms=ALGORITHMS, strict_check_header=False)
        self._claims = JWTClaimsRegistry(
            now=lambda: int(now()),
            leeway=leeway,
            exp={"essential": True},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
        )

    @classmethod
    def from_settings(
        cls,
        iam: IAMSettings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> TokenValidator:
        return cls(
            issuers=iam.issuers,
            audience=iam.audience,
            leeway=iam.token_leeway,
            groups_claims=list(iam.groups_claims),
            keys=KeyCache(http, iam.jwks_refetch_interval, clock),
            now=now,
        )

    async def validate(self, token: str, *, required_scope: str | None = None) -> TokenClaims:
        """The token's claims, or :class:`TokenRefused`; ``required_scope`` missing: 403."""
        try:
            return await self._validate(token, required_scope)
        except TokenRefused as exc:
            log.debug("access token refused: %s", exc.reason)
            raise
        except Exception:  # a bug: never let it surface with the token in a traceback
            log.exception("access token validation failed unexpectedly")
            raise TokenRefused("internal", "The token could not be checked.") from None

    async def _validate(self, token: str, required_scope: str | None) -> TokenClaims:
        obj, header = self._parse(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRefused(
                "alg-not-allowed",
                "The token is signed with an algorithm the portal does not accept "
                f"(accepted: {', '.join(ALGORITHMS)}).",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("kid-missing", "The token names no signing key (no 'kid').")
        try:
            payload = json.loads(obj.payload)
        except (ValueError, TypeError, RecursionError):
            raise _malformed("the payload is not JSON") from None
        if not isinstance(payload, dict):
            raise _malformed("the payload is not a JSON object")
        issuer = payload.get("iss")
        issuer = issuer.removesuffix("/") if isinstance(issuer, str) else None
        if issuer not in self.issuers:
            raise TokenRefused(
                "issuer-not-trusted",
                "The token comes from an issuer the portal does not trust "
                f"(trusted: {', '.join(sorted(self.issuers))}).",
            )
        try:
            key = await self.keys.key(issuer, kid)
        except KeyUnavailable as exc:
            if not exc.reachable:
                raise TokenRefused(
                    "issuer-unreachable",
                    "The token's issuer cannot be reached to fetch its signing key: try later.",
                ) from None
            raise TokenRefused(
                "kid-unknown", "The token is signed with a key its issuer does not publish."
            ) from None
        try:
            verified = jws.validate_compact(obj, key, registry=self._registry)
        except errors.JoseError:
            verified = False  # e.g. an RSA algorithm named with an EC key
        if not verified:
            raise TokenRefused("signature", "The token's signature is not valid.")
        self._check_claims(payload)
        scopes, groups = _scopes(payload), self._groups(payload)
        if required_scope is not None and required_scope not in scopes:
            raise TokenRefused(
                "scope-missing",
                f"The token does not grant the scope {required_scope!r}: "
                "ask your identity provider for a token with it.",
                status=403,
            )
        sub, name = payload["sub"], payload.get("preferred_username")
        username = name if isinstance(name, str) and name else sub
        expires_at = float(min(payload["exp"], 1e18))  # no OverflowError on huge ints
        return TokenClaims(
            sub, username, issuer, groups, scopes, expires_at, MappingProxyType(payload)
        )

    def _parse(self, token: object) -> tuple[jws.CompactSignature, dict]:
        if not isinstance(token, str) or not token:
            raise _malformed("empty")
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise _malformed("too long or not ASCII")
        if token.count(".") != 2:
            raise _malformed("a JWT has three dot-separated parts")
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (errors.JoseError, ValueError, TypeError):
            raise _malformed("cannot decode the header or the payload") from None
        header = obj.protected
        if not isinstance(header, dict):
            raise _malformed("the header is not a JSON object")
        if "b64" in header or "crit" in header:
            raise _malformed("unsupported header extensions")
        return obj, header

    def _check_claims(self, payload: dict) -> None:
        try:
            self._claims.validate(payload)
        except errors.MissingClaimError as exc:
            missing = exc.claim.split(",")
            if "aud" in missing:
                raise TokenRefused("aud-missing", "The token names no audience ('aud').") from None
            raise TokenRefused(
                "claim-missing", f"The token lacks required claims: {', '.join(missing)}."
            ) from None
        except errors.ExpiredTokenError:
            raise TokenRefused("expired", "The token has expired: get a new one.") from None
        except errors.ClaimError as exc:
            reason, message = _TIME_CLAIMS.get(
                exc.claim, ("claim-invalid", f"The token's '{exc.claim}' claim is not valid.")
            )
            raise TokenRefused(reason, message) from None

    def _groups(self, payload: dict) -> tuple[str, ...]:
        for name in self.groups_claims:
            value = payload.get(name)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
                raise TokenRefused("claim-invalid", f"The token's '{name}' claim is not a list.")
            if name == "wlcg.groups":
                value = [g.removeprefix("/") for g in value]
            return tuple(dict.fromkeys(g for g in value if g))
        return ()


def _scopes(payload: dict) -> frozenset[str]:
    value = payload.get("scope")
    if value is None:
        return frozenset()
    if not isinstance(value, str):
        raise TokenRefused("claim-invalid", "The token's 'scope' claim is not a string.")
    return frozenset(value.split())
