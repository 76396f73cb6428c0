"""Endpoints for load balancers, service managers and Prometheus: `/healthz`, `/readyz`,
`/metrics`.

They sign nobody in (a load balancer cannot log in), so their check is the caller's
address instead of a role: only the `[http] ops_networks` (loopback by default) get an
answer, everyone else a 403 - the figures name PBXes, queues and load. Behind a proxy,
the address is the one `trusted_proxies` vouch for (web.login_throttle.client_address).

- `/healthz`: the process is alive and its event loop turns (200, always, if answered).
- `/readyz`: the database answers, and every PBX is either connected with this node as its
  owner or standing by for another node: 200, else 503; the body says which part is not.
- `/metrics`: the Prometheus text format (bridge.metrics).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from web.login_throttle import Network, client_address

OPS_PATHS = ("/healthz", "/readyz", "/metrics")  # public to the auth middleware: checked here
# (ready, details): details are JSON for the body
Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def add_ops_routes(app: web.Application, *, readiness: Readiness, registry: CollectorRegistry,
                   allowed: tuple[Network, ...], trusted_proxies: tuple[Network, ...] = ()) -> None:
    def permitted(request: web.Request) -> bool:
        try:
            ip = ipaddress.ip_address(client_address(request, trusted_proxies).split("%")[0])
        except ValueError:
            return False
        return any(ip in net for net in allowed)

    def guard(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
              ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def checked(request: web.Request) -> web.StreamResponse:
            if not permitted(request):
                return web.json_response({"error": "forbidden",
                                          "message": "not from an address of [http] ops_networks"},
                                         status=403)
            return await handler(request)
        return checked

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})

    async def readyz(_: web.Request) -> web.Response:
        ready, details = await readiness()
        return web.json_response({"status": "ready" if ready else "not ready", **details},
                                 status=200 if ready else 503, headers={"Cache-Control": "no-store"})

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                                "Cache-Control": "no-store"})

    app.router.add_get("/healthz", guard(healthz))
    app.router.add_get("/readyz", guard(readyz))
    app.router.add_get("/metrics", guard(metrics))
