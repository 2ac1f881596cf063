"""``/healthz`` (the process is alive) and ``/readyz`` (it can serve traffic)."""

from __future__ import annotations

from aiohttp import web
from tortoise import connections

from server.appkeys import NODE


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    checks = {"broker": node.broker.healthy, "database": await _database_ok(), "accepting": not node.shutting_down}
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks, "node": node.id},
        status=200 if ready else 503,
    )


async def _database_ok() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:
        return False
    return True


routes = [web.get("/healthz", healthz), web.get("/readyz", readyz)]
