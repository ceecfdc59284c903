"""Log in through the real OIDC provider with plain HTTP, as a browser would."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

_FORM = re.compile(r'<form[^>]*action="([^"]+)"', re.IGNORECASE)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.IGNORECASE)


def login(
    base_url: str, username: str, password: str = "demo", next_url: str = "", check: bool = True
) -> httpx.Client:
    """A client holding the hub's login cookies for ``username``."""
    client = httpx.Client(base_url=base_url, follow_redirects=True, timeout=30)
    page = client.get("/hub/oauth_login", params={"next": next_url} if next_url else None)
    page.raise_for_status()
    match = _FORM.search(page.text)
    assert match, f"no login form at {page.url}: {page.text[:300]}"
    reply = client.post(
        urljoin(str(page.url), match[1]),
        data={**dict(_HIDDEN.findall(page.text)), "login": username, "password": password},
    )
    if check:
        reply.raise_for_status()
        assert "/hub/" in str(reply.url), f"login ended at {reply.url}"
    client.final_url, client.final_reply = reply.url, reply
    return client


def xsrf_headers(client: httpx.Client) -> dict[str, str]:
    return {"X-XSRFToken": client.cookies.get("_xsrf", path="/hub/") or ""}


def hub_token(client: httpx.Client, username: str) -> str:
    """A hub API token of the logged-in user, made through the hub's own REST API."""
    reply = client.post(
        f"/hub/api/users/{username}/tokens", json={"note": "tests"}, headers=xsrf_headers(client)
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["token"]


def browser_login(page, url: str, user: str, password: str = "demo") -> None:
    """Log ``user`` in with a Playwright page, through the login button and the provider."""
    page.goto(url)
    page.click("#gpuaf-login")
    page.wait_for_url(re.compile(r".*/interaction/.*"))
    page.fill("input[name=login]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hub/.*"))
