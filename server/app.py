"""The application factory: ``create_app(settings)``.

Everything is wired here, declaratively: the routes, the handler table, and one
cleanup context per resource (database, authenticator, broker + node). Nothing
is registered as a side effect of an import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import AsyncIterator, Mapping

from aiohttp import web

from handlers import AUTHORIZERS, HANDLERS
from models.db import database_ctx
from server.api import auth as auth_api
from server.api import health, metrics, openapi, rooms, server_api
from server.api.middleware import error_middleware
from server.appkeys import AUTHORIZER_TABLE, HANDLER_TABLE, METRICS, NODE, SETTINGS
from server.auth import auth_ctx
from server.broker.base import Broker
from server.channels import Authorizer
from server.config import Settings
from server.dispatch import HandlerTable
from server.logs import request_log_middleware
from server.metrics import create_registry
from server.node import Node
from server.presence.base import PresenceStore
from server.stats import stats_ctx
from server.websocket import websocket_handler

log = logging.getLogger("stagewire.app")

MAX_REQUEST_BODY = 1024 * 1024


def create_broker(settings: Settings) -> Broker:
    """The broker named by ``[broker] backend``."""
    backend = settings.broker.backend
    if backend == "memory":
        from server.broker.memory import MemoryBroker

        return MemoryBroker()
    if backend == "redis":
        from server.broker.redis import RedisBroker

        return RedisBroker(settings.broker)
    raise ValueError(f"unknown broker backend {backend!r} (memory or redis)")


def create_presence(settings: Settings, broker: Broker) -> PresenceStore:
    """The presence store that goes with the broker backend."""
    if settings.broker.backend == "redis":
        from server.presence.redis import RedisPresence

        return RedisPresence(settings.broker)
    from server.presence.memory import MemoryPresence

    return MemoryPresence(settings.broker.presence_ttl)


async def node_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    broker = create_broker(settings)
    node = Node(settings, broker, create_presence(settings, broker), app[AUTHORIZER_TABLE])
    await node.start()
    app[NODE] = node
    log.info("node %s started with the %s broker", node.id, app[SETTINGS].broker.backend)
    yield
    await node.close()


async def close_websockets(app: web.Application) -> None:
    """On shutdown every client is told to reconnect (code 4000) before we exit."""
    if NODE in app:
        await app[NODE].shutdown(app[SETTINGS].server.shutdown_timeout)


def create_app(
    settings: Settings,
    *,
    handlers: HandlerTable = HANDLERS,
    authorizers: Mapping[str, Authorizer] = AUTHORIZERS,
) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[request_log_middleware, error_middleware])
    app[SETTINGS] = settings
    app[HANDLER_TABLE] = handlers
    app[AUTHORIZER_TABLE] = authorizers
    app[METRICS] = create_registry(lambda: app.get(NODE))
    app.cleanup_ctx.extend([database_ctx, auth_ctx, node_ctx, stats_ctx])
    app.on_shutdown.append(close_websockets)
    app.add_routes([web.get("/ws", websocket_handler)])
    app.add_routes(health.routes)
    app.add_routes(auth_api.routes)
    app.add_routes(server_api.routes)
    app.add_routes(metrics.routes)
    app.add_routes(rooms.routes)
    app.add_routes(openapi.routes)
    _add_static(app, settings.path(settings.server.static_dir))
    return app


def _add_static(app: web.Application, static_dir: Path) -> None:
    if not static_dir.is_dir():
        return
    index = static_dir / "index.html"

    async def index_page(request: web.Request) -> web.StreamResponse:
        if index.exists():
            return web.FileResponse(index)
        raise web.HTTPNotFound()

    async def dashboard_page(request: web.Request) -> web.StreamResponse:
        if (static_dir / "dashboard.html").exists():
            return web.FileResponse(static_dir / "dashboard.html")
        raise web.HTTPNotFound()

    app.add_routes([
        web.get("/", index_page), web.get("/dashboard", dashboard_page), web.static("/static", static_dir),
    ])
