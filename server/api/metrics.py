"""``GET /metrics``: the node's Prometheus metrics (see :mod:`server.metrics`).

Who may read them: requests from a loopback address (a Prometheus or an agent
on the same host), and any request with a server API key
(``Authorization: Bearer <key>``, as for the server API). Others get 401.
Behind a reverse proxy on the same host every request looks local: do not
route ``/metrics`` through it, or make the proxy refuse it.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.api.server_api import api_key_required
from server.appkeys import METRICS


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_with_key = api_key_required(_metrics)


async def metrics(request: web.Request) -> web.StreamResponse:
    if is_loopback(request.remote):
        return await _metrics(request)
    return await _with_key(request)


routes = [web.get("/metrics", metrics)]
