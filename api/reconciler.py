"""The portal API's background task: reconcile the ledger every few seconds."""

from __future__ import annotations

import asyncio
import logging

import httpx

from gpuaf.api.identity import HubIdentity
from gpuaf.facility import Facility
from gpuaf.reconcile import ServerKey, reconcile

log = logging.getLogger("gpuaf.api.reconcile")


async def hub_servers(identity: HubIdentity) -> dict[ServerKey, bool] | None:
    """(user, server) -> ready for every active server the hub knows; None if it did not say."""
    auth = identity.hub_auth
    try:
        reply = await identity.http.get(
            f"{auth.api_url}/users",
            params={"state": "active"},
            headers={"Authorization": f"token {auth.api_token}"},
        )
        reply.raise_for_status()
        users = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("the hub did not list its servers: %s", exc)
        return None
    return {
        (user["name"], name): bool(server.get("ready"))
        for user in users
        for name, server in (user.get("servers") or {}).items()
    }


async def run_forever(facility: Facility, identity: HubIdentity) -> None:
    interval = facility.settings.sessions.reconcile_interval
    while True:
        await asyncio.sleep(interval)
        try:
            servers = await hub_servers(identity)
            result = await reconcile(facility.ledger, facility.backend, servers)
        except Exception:
            log.exception("reconcile round failed")
            continue
        for sid, state in result.changed.items():
            log.info("session %s is now %s", sid, state)
