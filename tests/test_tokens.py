"""IAM access tokens (JWT, WLCG profile) sent to the portal API: api/tokens.py, api/jwks.py.

Real tokens come from the demo's OIDC provider (oidc-provider, JWT access tokens switched
on); forged ones from an in-process issuer that serves discovery and JWKS over HTTP and
counts what it is asked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from support.issuer import READER, RealIdp, TestIssuer, b64, start_idp

from gpuaf.api.tokens import TokenRefused, TokenValidator
from gpuaf.demo.supervisor import find_node_modules
from gpuaf.settings import IAMSettings


class Clock:
    """A monotonic clock the tests move forward."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    with TestIssuer() as running:
        yield running


@pytest.fixture
def untrusted() -> Iterator[TestIssuer]:
    with TestIssuer() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(http: httpx.AsyncClient, clock: Clock) -> Callable[..., TokenValidator]:
    def make_validator(*issuers: str, **iam: object) -> TokenValidator:
        settings = IAMSettings(
            issuer=issuers[0], client_id="gpuaf-portal", trusted_issuers=list(issuers), **iam
        )
        return TokenValidator.from_settings(settings, http, clock=clock)

    return make_validator


@pytest.fixture
def validator(make, issuer: TestIssuer) -> TokenValidator:
    return make(issuer.url, token_leeway=30, jwks_refetch_interval=300)


async def refused(validator: TokenValidator, token: str, **kw: object) -> TokenRefused:
    with pytest.raises(TokenRefused) as info:
        await validator.validate(token, **kw)
    exc = info.value
    if token:
        assert token not in str(exc) and token not in exc.log_message
    return exc


# --- the real provider ------------------------------------------------------------------
@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealIdp]:
    if shutil.which("node") is None or find_node_modules() is None:
        pytest.skip("node and node_modules/oidc-provider are needed (npm ci)")
    running = start_idp(tmp_path_factory.mktemp("idp"), audience="gpuaf")
    yield running
    running.stop()


async def test_real_user_token_validates(idp: RealIdp, make) -> None:
    token = idp.user_token("alice", "openid profile compute.read compute.create")
    claims = await make(idp.issuer).validate(token, required_scope="compute.create")
    assert claims.username == "alice" and claims.subject == "alice"
    assert claims.issuer == idp.issuer
    assert claims.groups == ("higgs",)
    assert claims.scopes == {"compute.read", "compute.create"}
    assert claims.expires_at > time.time() + 3000
    assert claims.claims["aud"] == "gpuaf"


async def test_real_token_of_a_member_of_two_groups(idp: RealIdp, make) -> None:
    claims = await make(idp.issuer).validate(idp.user_token("carol"))
    assert claims.groups == ("higgs", "neutrino")
    assert claims.scopes == {"compute.read"}


async def test_real_client_credentials_token(idp: RealIdp, make) -> None:
    token = idp.client_token(scope="compute.read compute.cancel")
    claims = await make(idp.issuer).validate(token, required_scope="compute.cancel")
    assert claims.username == claims.subject == "gpuaf-tests"
    assert claims.groups == ()
    assert claims.scopes == {"compute.read", "compute.cancel"}


async def test_real_token_for_another_audience_is_refused(idp: RealIdp, make) -> None:
    exc = await refused(make(idp.issuer, audience="other-service"), idp.client_token())
    assert (exc.status, exc.reason) == (401, "aud-wrong")


async def test_real_token_without_compute_create_is_forbidden(idp: RealIdp, make) -> None:
    token = idp.client_token(READER, scope="compute.read")  # the client may not ask for more
    validator = make(idp.issuer)
    assert (await validator.validate(token, required_scope="compute.read")).scopes == {
        "compute.read"
    }
    exc = await refused(validator, token, required_scope="compute.create")
    assert (exc.status, exc.reason) == (403, "scope-missing")
    assert "compute.create" in exc.message
    assert exc.www_authenticate.startswith('Bearer error="insufficient_scope"')


def test_reader_client_cannot_ask_for_more_than_compute_read(idp: RealIdp) -> None:
    reply = httpx.post(
        f"{idp.issuer}/token",
        data={"grant_type": "client_credentials", "scope": "compute.read compute.create"},
        auth=(READER["client_id"], READER["client_secret"]),
    )
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_scope"


# --- forged and faulty tokens -----------------------------------------------------------
def unsigned(header: dict, claims: dict, signature: str = "") -> str:
    return f"{b64(header)}.{b64(claims)}.{signature}"


def hs_with_public_key(issuer: TestIssuer, alg: str, secret_form: str) -> str:
    """HMAC keyed with the issuer's public key, as published (PEM or JWK JSON)."""
    key = issuer.keys["key-1"]
    secret = (
        key.as_pem(private=False)
        if secret_form == "pem"
        else json.dumps(key.as_dict(private=False)).encode()
    )
    signing_input = f"{b64({'alg': alg, 'kid': 'key-1'})}.{b64(issuer.claims())}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(mac)}"


def now() -> int:
    return int(time.time())


def swap_header(token: str, header: dict) -> str:
    """The token with another header and its original signature."""
    return ".".join([b64(header), *token.split(".")[1:]])


def swap_payload(token: str, claims: dict) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{b64(claims)}.{signature}"


def replace_part(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


RS = {"alg": "RS256", "kid": "key-1"}
# (status, reason, whether the issuer may have been asked for keys) -> name -> token maker
REFUSALS: dict[tuple[int, str, bool], dict[str, Callable[[TestIssuer], str]]] = {
    (401, "alg-not-allowed", False): {
        "alg-none": lambda i: unsigned({"alg": "none", "kid": "key-1"}, i.claims()),
        "alg-none-with-signature": lambda i: swap_header(i.sign(), {"alg": "none", "kid": "key-1"}),
        "alg-None": lambda i: unsigned({"alg": "None", "kid": "key-1"}, i.claims()),
        "alg-not-a-string": lambda i: unsigned(
            {"alg": ["RS256"], "kid": "key-1"}, i.claims(), "c2ln"
        ),
        "hs256-public-key-pem": lambda i: hs_with_public_key(i, "HS256", "pem"),
        "hs256-public-key-jwk": lambda i: hs_with_public_key(i, "HS256", "jwk"),
        "hs384-public-key": lambda i: hs_with_public_key(i, "HS384", "pem"),
        "hs512-public-key": lambda i: hs_with_public_key(i, "HS512", "pem"),
        "es256k": lambda i: swap_header(i.sign(), {"alg": "ES256K", "kid": "key-1"}),
    },
    (401, "malformed", False): {
        "alg-missing": lambda i: unsigned({"kid": "key-1"}, i.claims(), "c2ln"),
        "crit-header": lambda i: swap_header(i.sign(), {**RS, "crit": ["exp"], "exp": 1}),
        "b64-header": lambda i: swap_header(i.sign(), {**RS, "b64": False, "crit": ["b64"]}),
        "not-three-parts": lambda i: "abc.def",
        "one-part": lambda i: "abc",
        "four-parts": lambda i: i.sign() + ".xyz",
        "jwe-five-parts": lambda i: "a.b.c.d.e",
        "empty": lambda i: "",
        "dots-only": lambda i: "..",
        "bad-base64-header": lambda i: replace_part(i.sign(), 0, "!!!!"),
        "bad-base64-payload": lambda i: replace_part(i.sign(), 1, "@@@"),
        "header-not-json": lambda i: replace_part(i.sign(), 0, b64(b"not json")),
        "header-a-list": lambda i: replace_part(i.sign(), 0, b64(b'["alg", "kid"]')),
        "header-a-string": lambda i: replace_part(i.sign(), 0, b64(b'"alg kid"')),
        "payload-not-json": lambda i: replace_part(i.sign(), 1, b64(b"{oops")),
        "payload-a-list": lambda i: replace_part(i.sign(), 1, b64(b"[1, 2]")),
        "not-ascii": lambda i: i.sign()[:-2] + "é",
        "too-long": lambda i: i.sign(i.claims(pad="x" * 20000)),
        "payload-nested-deeply": lambda i: replace_part(i.sign(), 1, b64(b"[" * 9000)),
        "bearer-prefix-left-on": lambda i: "Bearer " + i.sign(),
    },
    (401, "kid-missing", False): {
        "kid-missing": lambda i: i.sign(header={"kid": None}),
        "kid-empty": lambda i: i.sign(header={"kid": ""}),
        "kid-not-a-string": lambda i: swap_header(i.sign(), {"alg": "RS256", "kid": 7}),
    },
    (401, "kid-unknown", True): {
        "kid-unknown": lambda i: i.sign(header={"kid": "ghost"}),
    },
    (401, "issuer-not-trusted", False): {
        "iss-missing": lambda i: i.sign(i.claims(iss=None)),
        "iss-not-a-string": lambda i: i.sign(i.claims(iss=[i.url])),
        "iss-many-slashes": lambda i: i.sign(i.claims(iss=i.url + "//")),
        "iss-lookalike": lambda i: i.sign(i.claims(iss=i.url + ".evil.example")),
        "iss-other-port": lambda i: i.sign(i.claims(iss=i.url + "1")),
    },
    (401, "aud-missing", True): {
        "aud-missing": lambda i: i.sign(i.claims(aud=None)),
    },
    (401, "aud-wrong", True): {
        "aud-wrong": lambda i: i.sign(i.claims(aud="other-service")),
        "aud-list-without-us": lambda i: i.sign(i.claims(aud=["a", "b"])),
        "aud-prefix": lambda i: i.sign(i.claims(aud="gpuaf-other")),
        "aud-not-a-string": lambda i: i.sign(i.claims(aud=7)),
    },
    (401, "expired", True): {
        "expired-beyond-leeway": lambda i: i.sign(i.claims(exp=now() - 45)),
    },
    (401, "claim-missing", True): {
        "exp-missing": lambda i: i.sign(i.claims(exp=None)),
        "sub-missing": lambda i: i.sign(i.claims(sub=None)),
    },
    (401, "claim-invalid", True): {
        "exp-not-a-number": lambda i: i.sign(i.claims(exp="tomorrow")),
        "exp-nan": lambda i: i.sign(i.claims(exp=float("nan"))),
        "groups-not-a-list": lambda i: i.sign(i.claims(**{"wlcg.groups": "/higgs"})),
        "scope-not-a-string": lambda i: i.sign(i.claims(scope=["compute.read"])),
    },
    (401, "not-yet-valid", True): {
        "nbf-in-future": lambda i: i.sign(i.claims(nbf=now() + 120)),
    },
    (401, "iat-in-future", True): {
        "iat-in-future": lambda i: i.sign(i.claims(iat=now() + 120)),
    },
    (401, "signature", True): {
        "signature-tampered": lambda i: swap_payload(i.sign(), i.claims(preferred_username="root")),
        "signature-of-another-key": lambda i: TestIssuer().sign(i.claims()),
        "signature-empty": lambda i: replace_part(i.sign(), 2, ""),
        "alg-key-mismatch": lambda i: swap_header(i.sign(), {"alg": "ES256", "kid": "key-1"}),
        "rs256-signature-as-ps256": lambda i: swap_header(
            i.sign(), {"alg": "PS256", "kid": "key-1"}
        ),
    },
}
FORGED = {
    name: (make, *outcome) for outcome, cases in REFUSALS.items() for name, make in cases.items()
}


@pytest.mark.parametrize("case", FORGED)
async def test_forged_or_faulty_token_is_refused(
    case: str, issuer: TestIssuer, validator: TokenValidator, caplog: pytest.LogCaptureFixture
) -> None:
    make_token, status, reason, may_fetch = FORGED[case]
    token = make_token(issuer)
    caplog.set_level(logging.DEBUG, logger="gpuaf.api")
    exc = await refused(validator, token)
    assert (exc.status, exc.reason) == (status, reason), exc.message
    assert exc.message and (not token or token not in caplog.text)
    if not may_fetch:
        assert issuer.total_requests == 0, issuer.requests


async def test_untrusted_issuer_is_never_contacted(
    issuer: TestIssuer, untrusted: TestIssuer, validator: TokenValidator
) -> None:
    token = untrusted.sign()  # a well-formed token of another, running issuer
    exc = await refused(validator, token)
    assert (exc.status, exc.reason) == (401, "issuer-not-trusted")
    assert issuer.url in exc.message
    assert untrusted.total_requests == 0 and issuer.total_requests == 0


async def test_a_valid_token(issuer: TestIssuer, validator: TokenValidator) -> None:
    claims = await validator.validate(issuer.sign(), required_scope="compute.create")
    assert (claims.subject, claims.username, claims.issuer) == (
        "0c5d8a2e-alice",
        "alice",
        issuer.url,
    )
    assert claims.groups == ("higgs",)
    assert claims.scopes == frozenset({"compute.read", "compute.create"})
    with pytest.raises(TypeError):
        claims.claims["sub"] = "mallory"  # type: ignore[index]


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": -10},  # expired, within the leeway
        {"nbf": 10},
        {"iat": 10},
        {"aud": ["other-service", "gpuaf"]},
        {"nbf": None, "iat": None, "jti": None, "wlcg.ver": None},
        {"exp": 10**400},
    ],
    ids=[
        "exp-within-leeway",
        "nbf-within-leeway",
        "iat-within-leeway",
        "aud-list",
        "minimal",
        "exp-huge",
    ],
)
async def test_accepted_variants(changes: dict, issuer: TestIssuer, validator) -> None:
    for claim in ("exp", "nbf", "iat"):  # seconds from now
        if isinstance(changes.get(claim), int):
            changes = {**changes, claim: now() + changes[claim]}
    claims = await validator.validate(issuer.sign(issuer.claims(**changes)))
    assert claims.username == "alice"


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize(
    ("kind", "alg"),
    [
        ("RSA", "RS384"), ("RSA", "RS512"), ("RSA", "PS256"), ("RSA", "PS512"),
        ("EC", "ES256"), ("EC-384", "ES384"), ("EC-521", "ES512"),
        ("OKP", "EdDSA"), ("OKP", "Ed25519"),
    ],
)  # fmt: skip
async def test_other_asymmetric_algorithms(
    kind: str, alg: str, issuer: TestIssuer, validator
) -> None:
    issuer.add_key("key-x", kind)
    assert (await validator.validate(issuer.sign(kid="key-x", alg=alg))).username == "alice"


async def test_issuer_with_trailing_slash(issuer: TestIssuer, make) -> None:
    validator = make(issuer.url + "/")
    claims = await validator.validate(issuer.sign(issuer.claims(iss=issuer.url + "/")))
    assert claims.issuer == issuer.url


async def test_a_token_without_preferred_username_is_named_by_sub(issuer, validator) -> None:
    claims = await validator.validate(issuer.sign(issuer.claims(preferred_username=None)))
    assert claims.username == "0c5d8a2e-alice"


async def test_missing_scope_is_forbidden(issuer: TestIssuer, validator) -> None:
    token = issuer.sign(issuer.claims(scope="compute.read"))
    exc = await refused(validator, token, required_scope="compute.create")
    assert (exc.status, exc.reason) == (403, "scope-missing")
    exc = await refused(
        validator, issuer.sign(issuer.claims(scope=None)), required_scope="compute.read"
    )
    assert (exc.status, exc.reason) == (403, "scope-missing")


async def test_a_similar_scope_is_not_the_scope(issuer: TestIssuer, validator) -> None:
    token = issuer.sign(issuer.claims(scope="compute.createX compute:create"))
    exc = await refused(validator, token, required_scope="compute.create")
    assert exc.reason == "scope-missing"


# --- groups -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claims", "groups"),
    [
        ({"wlcg.groups": ["/higgs/analysis"]}, ("higgs/analysis",)),  # never "higgs"
        ({"wlcg.groups": ["/higgs", "/higgs/analysis"]}, ("higgs", "higgs/analysis")),
        ({"wlcg.groups": ["//odd"]}, ("/odd",)),  # one "/" only
        ({"wlcg.groups": [], "groups": ["higgs"]}, ()),  # the first present claim wins
        ({"wlcg.groups": None, "groups": ["higgs/analysis"]}, ("higgs/analysis",)),
        ({"wlcg.groups": None, "groups": ["/higgs"]}, ("/higgs",)),  # groups: read exactly
        ({"wlcg.groups": None}, ()),
    ],
    ids=["child-only", "parent-and-child", "double-slash", "empty-first", "groups", "groups-exact",
         "none"],
)  # fmt: skip
async def test_groups_are_read_exactly(claims: dict, groups: tuple, issuer, validator) -> None:
    assert (await validator.validate(issuer.sign(issuer.claims(**claims)))).groups == groups


async def test_groups_claims_order_comes_from_the_settings(issuer: TestIssuer, make) -> None:
    validator = make(issuer.url, groups_claims=["groups", "wlcg.groups"])
    token = issuer.sign(issuer.claims(groups=["neutrino"]))
    assert (await validator.validate(token)).groups == ("neutrino",)


# --- the key cache ------------------------------------------------------------------------
async def test_concurrent_unknown_kid_shares_one_fetch(issuer: TestIssuer, validator) -> None:
    ghost = issuer.sign(header={"kid": "ghost"})
    results = await asyncio.gather(
        *(validator.validate(ghost) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, TokenRefused) and r.reason == "kid-unknown" for r in results)
    assert issuer.key_fetches == 1
    results = await asyncio.gather(
        *(validator.validate(ghost) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, TokenRefused) and r.reason == "kid-unknown" for r in results)
    assert issuer.key_fetches == 1  # within the interval: no new fetch


async def test_refetch_after_the_interval_is_shared_too(
    issuer: TestIssuer, validator, clock: Clock
) -> None:
    await validator.validate(issuer.sign())
    assert issuer.key_fetches == 1
    issuer.add_key("key-2")
    clock.t += 300
    token = issuer.sign(kid="key-2")
    results = await asyncio.gather(*(validator.validate(token) for _ in range(50)))
    assert {r.username for r in results} == {"alice"}
    assert issuer.key_fetches == 2


async def test_new_keys_are_picked_up_after_the_interval(
    issuer: TestIssuer, validator, clock: Clock
) -> None:
    await validator.validate(issuer.sign())
    issuer.add_key("key-2")
    rotated = issuer.sign(kid="key-2")
    clock.t += 299
    assert (await refused(validator, rotated)).reason == "kid-unknown"
    assert issuer.key_fetches == 1
    clock.t += 1
    assert (await validator.validate(rotated)).username == "alice"
    assert issuer.key_fetches == 2
    assert issuer.requests["/.well-known/openid-configuration"] == 1  # jwks_uri is kept


async def test_keys_removed_by_the_issuer_stop_working(
    issuer: TestIssuer, validator, clock: Clock
) -> None:
    old = issuer.sign()
    await validator.validate(old)
    issuer.add_key("key-2")
    del issuer.keys["key-1"]
    clock.t += 300
    await validator.validate(issuer.sign(kid="key-2"))
    assert (await refused(validator, old)).reason == "kid-unknown"


async def test_issuer_down_cached_keys_keep_working_and_it_recovers(
    issuer: TestIssuer, validator, clock: Clock
) -> None:
    await validator.validate(issuer.sign())
    issuer.stop()
    for _ in range(3):
        assert (await validator.validate(issuer.sign())).username == "alice"
    issuer.add_key("key-2")
    rotated = issuer.sign(kid="key-2")
    clock.t += 300
    exc = await refused(validator, rotated)
    assert (exc.status, exc.reason) == (401, "issuer-unreachable")
    assert (await validator.validate(issuer.sign())).username == "alice"  # still cached
    issuer.start()
    clock.t += 300
    assert (await validator.validate(rotated)).username == "alice"
    assert issuer.requests["/.well-known/openid-configuration"] == 2  # discovered again


async def test_issuer_down_at_first_use(issuer: TestIssuer, validator, clock: Clock) -> None:
    token = issuer.sign()
    issuer.stop()
    exc = await refused(validator, token)
    assert (exc.status, exc.reason) == (401, "issuer-unreachable")
    issuer.start()
    assert (await refused(validator, token)).reason == "issuer-unreachable"  # no burst
    clock.t += 300
    assert (await validator.validate(token)).username == "alice"


async def test_issuer_answering_errors_is_unreachable(issuer: TestIssuer, validator) -> None:
    issuer.fail_with = 503
    exc = await refused(validator, issuer.sign())
    assert (exc.status, exc.reason) == (401, "issuer-unreachable")


async def test_discovery_naming_another_issuer_is_not_used(
    issuer: TestIssuer, validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        issuer,
        "_answer",
        lambda path: (200, {"issuer": "https://evil.example", "jwks_uri": issuer.url + "/jwks"}),
    )
    exc = await refused(validator, issuer.sign())
    assert exc.reason == "issuer-unreachable"
    assert issuer.key_fetches == 0


async def test_symmetric_and_keyless_entries_of_the_key_set_are_ignored(
    issuer: TestIssuer, validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_answer = issuer._answer

    def answer(path: str) -> tuple[int, dict]:
        status, body = real_answer(path)
        if path == "/jwks":
            body["keys"] += [
                {"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(b"s" * 32).decode()},
                {"kty": "RSA", "kid": "broken"},
                {
                    "kty": "RSA",
                    "kid": "for-encryption",
                    "use": "enc",
                    **issuer.keys["key-1"].as_dict(private=False),
                },
                "not a key",
            ]
        return status, body

    monkeypatch.setattr(issuer, "_answer", answer)
    assert (await validator.validate(issuer.sign())).username == "alice"
    forged = hs_with_public_key(issuer, "HS256", "pem").replace(
        b64({"alg": "HS256", "kid": "key-1"}), b64({"alg": "HS256", "kid": "shared"})
    )
    assert (await refused(validator, forged)).reason == "alg-not-allowed"
    for kid in ("shared", "broken", "for-encryption"):
        forged = swap_header(issuer.sign(), {"alg": "RS256", "kid": kid})
        assert (await refused(validator, forged)).reason == "kid-unknown"


def test_leeway_above_a_minute_is_refused(http: httpx.AsyncClient) -> None:
    from gpuaf.api.jwks import KeyCache

    with pytest.raises(ValueError, match="leeway"):
        TokenValidator(
            issuers=["https://iam.example.org"], audience="gpuaf", leeway=61,
            groups_claims=["wlcg.groups"], keys=KeyCache(http, 300),
        )  # fmt: skip
