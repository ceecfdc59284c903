"""Hub API handlers added by the portal.

``POST /hub/api/batchspawner`` is where a session job reports the port its server
listens on (``batchspawner-singleuser`` speaks this protocol). The caller must hold the
server's own token, and the body must be exactly ``{"port": <int 1024-65535>}``:
nothing else a job sends may touch the spawner.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

PORT_MIN, PORT_MAX = 1024, 65535


def parse_port_report(body: object) -> int:
    """The port from a job's report, or ValueError saying what is allowed."""
    if not isinstance(body, dict) or set(body) != {"port"}:
        raise ValueError('the body must be exactly {"port": <integer 1024-65535>}')
    port = body["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not PORT_MIN <= port <= PORT_MAX:
        raise ValueError(f"port must be an integer from {PORT_MIN} to {PORT_MAX}")
    return port


class PortReportHandler(APIHandler):
    @web.authenticated
    def post(self) -> None:
        token = self.get_auth_token()
        user = self.current_user
        spawner = next(
            (s for s in getattr(user, "spawners", {}).values() if token and s.api_token == token),
            None,
        )
        if spawner is None:
            raise web.HTTPError(403, "Only a session's own token may report its port.")
        try:
            body = json.loads(self.request.body or b"null")
            port = parse_port_report(body)
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from exc
        spawner.port = port
        if hasattr(spawner, "port_reported"):
            spawner.port_reported.set()
        self.set_status(201)
        self.finish(json.dumps({"message": f"port {port} recorded"}))


class SessionTokenHandler(APIHandler):
    """``GET /hub/api/gpuaf/token``: the session's user's IAM access token, kept fresh.

    Only a session's own token may ask; the answer is never cached or logged.
    """

    @web.authenticated
    async def get(self) -> None:
        token = self.get_auth_token()
        user = self.current_user
        if not any(token and s.api_token == token for s in getattr(user, "spawners", {}).values()):
            raise web.HTTPError(403, "Only a running session's own token may ask for its token.")
        try:
            access, expires_at = await self.authenticator.fresh_access_token(user)
        except LookupError as exc:
            raise web.HTTPError(409, str(exc)) from exc
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"access_token": access, "expires_at": expires_at}))


HANDLERS = [
    (r"/api/batchspawner", PortReportHandler),
    (r"/api/gpuaf/token", SessionTokenHandler),
]
