"""The portal API's background task: reconcile the ledger every few seconds."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import httpx

from gpuaf.api.identity import HubIdentity
from gpuaf.facility import Facility
from gpuaf.reconcile import Memory, ServerKey, reconcile

log = logging.getLogger("gpuaf.api.reconcile")


async def hub_servers(identity: HubIdentity, page: int = 200) -> dict[ServerKey, bool] | None:
    """(user, server) -> ready for every active server the hub knows; None if it did not say.

    Reads every page of the hub's user list: a server missing from a truncated list would
    look like an orphan.
    """
    auth = identity.hub_auth
    servers: dict[ServerKey, bool] = {}
    offset = 0
    while True:
        try:
            reply = await identity.http.get(
                f"{auth.api_url}/users",
                params={"state": "active", "offset": offset, "limit": page},
                headers={
                    "Authorization": f"token {auth.api_token}",
                    "Accept": "application/jupyterhub-pagination+json",
                },
            )
            reply.raise_for_status()
            body = reply.json()
            users, following = body["items"], body["_pagination"].get("next")
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("the hub did not list its servers: %s", exc)
            return None
        for user in users:
            for name, server in (user.get("servers") or {}).items():
                servers[(user["name"], name)] = bool(server.get("ready"))
        if not following or not users:
            return servers
        offset = following["offset"]


async def run_forever(facility: Facility, identity: HubIdentity) -> None:
    interval = facility.settings.sessions.reconcile_interval
    memory = Memory()
    orphan_after = dt.timedelta(seconds=max(4 * interval, 20))
    while True:
        await asyncio.sleep(interval)
        try:
            servers = await hub_servers(identity)
            result = await reconcile(
                facility.ledger, facility.backend, servers, memory=memory, orphan_after=orphan_after
            )
        except Exception:
            log.exception("reconcile round failed")
            continue
        for job_id in result.released:
            log.warning("removed job %s: the hub does not know its session", job_id)
        if result.released:
            facility.forget_availability()
        for sid, state in result.changed.items():
            log.info("session %s is now %s", sid, state)
