"""The application factory: ``create_app(settings)``.

Everything is wired here, declaratively: the routes, the handler
applications (``handlers.REGISTRY``), and one cleanup context per resource,
in start-up order:

1. the database (Tortoise, migrations applied);
2. in Redis mode, the node's one Redis client (closed last), shared by the
   login limiter, the broker, presence and the hooks;
3. the authenticator (token secrets read or created; the login limiter is
   in Redis in Redis mode, so every node enforces one limit);
4. the node, with its broker and presence store;
5. the hooks (``server/hooks/``): the pooled HTTP client to the backend, the
   webhook outbox and senders, the cluster transitions and the proxies;
6. the Pusher service (``server/pusher/``) and the SSE tickets (``server/sse/``);
7. the live stats feed, and the heap trimmer (``server/ops/heap.py``).

Nothing is registered as a side effect of an import.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from handlers import REGISTRY
from models.db import close_db, init_db
from server.api import openapi, server_api
from server.api.errors import error_middleware
from server.api.security import set_security_headers
from server.appkeys import (
    API_DOCS, AUTH, AUTHORIZER_TABLE, HANDLER_TABLE, HOOKS, METRICS, NODE, PUSHER, REDIS, SETTINGS, SSE_TICKETS,
)
from server.auth import routes as auth_routes
from server.auth.limiter_redis import RedisLoginLimiter
from server.auth.sessions import Authenticator
from server.auth.tokens import load_secrets
from server.broker.base import Broker
from server.broker.memory import MemoryBroker
from server.broker.redis import RedisBroker
from server.broker.redis_client import RedisClient
from server.config import Settings
from server.hooks import routes as hooks_routes
from server.hooks.base import NO_EVENTS, NO_PROXY
from server.hooks.metrics import HooksCollector
from server.hooks.service import Hooks
from server.node import Node
from server.ops import health, heap, metrics
from server.ops.logs import request_log_middleware
from server.ops.stats import RecentErrors, StatsPublisher, stats_channel_usable
from server.presence.base import PresenceStore
from server.presence.memory import MemoryPresence
from server.presence.redis import RedisPresence
from server.pusher import auth as pusher_auth
from server.pusher import http_api as pusher_http
from server.pusher.apps import PusherApps
from server.pusher.service import PusherService
from server.pusher.websocket import pusher_websocket
from server.registry import HttpRoutes, Registry
from server.sse import routes as sse_routes
from server.sse.tickets import Tickets
from server.websocket import websocket_handler
from server.tasks import stop_tasks

log = logging.getLogger("stagewire.app")

MAX_REQUEST_BODY = 1024 * 1024


def create_app(settings: Settings, registry: Registry = REGISTRY) -> web.Application:
    """The Stagewire application for ``settings``, with the handler applications of ``registry``.

    Raises:
        ConfigError: A section of ``config.toml`` that no application declares,
            or a bad value in one.
    """
    settings.check_sections(registry.sections)
    PusherApps(settings.pusher.apps, settings.namespaces)  # raises ConfigError for a bad app
    app = web.Application(
        client_max_size=MAX_REQUEST_BODY,
        middlewares=[request_log_middleware, error_middleware],
        # aiohttp closes a connection that has no request in progress after this
        # long: one that never sends one, or trickles its headers (slowloris).
        handler_args={"keepalive_timeout": settings.server.header_timeout},
    )
    app[SETTINGS] = settings
    app[HANDLER_TABLE] = registry.handlers
    app[AUTHORIZER_TABLE] = registry.authorizers
    groups = (*registry.http, HttpRoutes(hooks_routes.routes, hooks_routes.describe))
    app[API_DOCS] = tuple(group.describe for group in groups if group.describe is not None)
    app[METRICS] = metrics.create_registry(lambda: app.get(NODE))
    app.cleanup_ctx.extend([database_ctx, redis_ctx, auth_ctx, node_ctx, hooks_ctx, pusher_ctx, sse_ctx, stats_ctx,
                            heap_ctx])
    app.on_shutdown.append(close_websockets)
    app.on_response_prepare.append(set_security_headers)
    app.add_routes([web.get("/ws", websocket_handler)])
    app.add_routes(health.routes)
    app.add_routes(metrics.routes)
    app.add_routes(auth_routes.routes)
    app.add_routes(server_api.routes)
    app.add_routes(openapi.routes)
    app.add_routes([web.get("/app/{key}", pusher_websocket)])
    app.add_routes(pusher_http.routes)
    app.add_routes(pusher_auth.routes)
    app.add_routes(sse_routes.routes)
    for group in groups:
        app.add_routes(group.routes)
    _add_static(app, settings.path(settings.server.static_dir))
    return app


# -- cleanup contexts, in start-up order -------------------------------------------


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to the database and apply pending migrations; close it last."""
    ctx = await init_db(app[SETTINGS])
    try:
        yield
    finally:
        # Explicitly this context: test harnesses may run the cleanup in
        # another task, which does not see the context variable.
        await close_db(ctx)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """In Redis mode, the node's one :class:`RedisClient` in ``app[REDIS]``; closed after everything using it."""
    settings = app[SETTINGS]
    if settings.broker.backend != "redis":
        yield
        return
    client = app[REDIS] = RedisClient(settings.broker)
    try:
        yield
    finally:
        await client.close()


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """Store an :class:`Authenticator` in ``app[AUTH]``; the token secrets are read (or created) here."""
    settings = app[SETTINGS]
    secrets = await asyncio.to_thread(load_secrets, settings)
    client = app.get(REDIS)
    limiter = None if client is None else RedisLoginLimiter(
        client, settings.auth.login_max_failures, settings.auth.login_window
    )
    auth = Authenticator(settings.auth, secrets, limiter=limiter)
    await auth.passwords.prepare()
    app[AUTH] = auth
    yield


async def node_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the node with the broker and presence store named by ``[broker] backend``."""
    settings = app[SETTINGS]
    backend = settings.broker.backend
    broker: Broker
    presence: PresenceStore
    if backend == "memory":
        broker, presence = MemoryBroker(), MemoryPresence(settings.broker.presence_ttl)
    elif backend == "redis":
        client = app[REDIS]
        broker, presence = RedisBroker(client), RedisPresence(client)
    else:
        raise ValueError(f"unknown broker backend {backend!r} (memory or redis)")
    node = Node(settings, broker, presence, app[AUTHORIZER_TABLE])
    auth = app[AUTH]
    auth.sessions.follow(node)
    try:
        await node.start()
        app[NODE] = node
        # After node.start: revocations already reach the cache while it fills.
        try:
            preloaded = await auth.preload()
        except Exception:
            log.warning("could not preload the session cache; connects will read the database",
                        exc_info=True)
            preloaded = 0
        log.info("node %s started with the %s broker (%d sessions preloaded)", node.id, backend, preloaded)
        yield
    finally:
        await node.close()


async def hooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Webhooks and proxies: the node emits into them and asks them; closed before the node.

    The app's shutdown closes every connection first, so their disconnect
    events are in the outbox (and their holds released) before this closes.
    """
    node = app[NODE]
    hooks = Hooks(app[SETTINGS], node, app.get(REDIS))
    collector = HooksCollector(hooks)
    await hooks.start()
    app[HOOKS] = hooks
    node.events, node.proxy = hooks.events, hooks.proxy
    app[METRICS].register(collector)
    try:
        yield
    finally:
        app[METRICS].unregister(collector)
        await hooks.close()
        node.events, node.proxy = NO_EVENTS, NO_PROXY


async def pusher_ctx(app: web.Application) -> AsyncIterator[None]:
    """The node's :class:`PusherService` in ``app[PUSHER]``; with no app configured it idles."""
    settings = app[SETTINGS]
    service = PusherService(app[NODE], PusherApps(settings.pusher.apps, settings.namespaces))
    if HOOKS in app:
        service.events = app[HOOKS].pusher  # the apps' webhooks ([[pusher.apps.webhooks]])
    app[PUSHER] = service
    if service.apps:
        service.start()
    try:
        yield
    finally:
        await service.close()


async def sse_ctx(app: web.Application) -> AsyncIterator[None]:
    """The SSE ticket signer in ``app[SSE_TICKETS]``: the token secrets and the node's broker."""
    secrets = await asyncio.to_thread(load_secrets, app[SETTINGS])
    app[SSE_TICKETS] = Tickets(secrets, app[NODE].broker)
    yield


async def stats_ctx(app: web.Application) -> AsyncIterator[None]:
    """Publish the node's stats every ``stats_interval`` seconds while the app runs."""
    settings = app[SETTINGS].server
    node = app[NODE]
    if settings.stats_interval <= 0 or not stats_channel_usable(settings.stats_channel, node):
        yield
        return
    errors = RecentErrors()
    root = logging.getLogger()
    root.addHandler(errors)
    publisher = StatsPublisher(node, settings.stats_channel, errors)
    task = asyncio.create_task(publisher.run(settings.stats_interval), name="stats-publisher")
    try:
        yield
    finally:
        await stop_tasks([task])
        root.removeHandler(errors)


async def heap_ctx(app: web.Application) -> AsyncIterator[None]:
    """Give the heap's free pages back after connections came and went, every ``heap_trim_interval`` seconds."""
    interval = app[SETTINGS].server.heap_trim_interval
    trim = heap.malloc_trim() if interval > 0 else None
    if trim is None:
        yield
        return
    task = asyncio.create_task(heap.HeapTrimmer(app[NODE], trim).run(interval), name="heap-trimmer")
    try:
        yield
    finally:
        await stop_tasks([task])


async def close_websockets(app: web.Application) -> None:
    """On shutdown every client is told to reconnect (code 4000) before we exit."""
    if NODE in app:
        await app[NODE].shutdown(app[SETTINGS].server.shutdown_timeout)


def _add_static(app: web.Application, static_dir: Path) -> None:
    if not static_dir.is_dir():
        return

    def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        path = static_dir / name

        async def serve(request: web.Request) -> web.StreamResponse:
            if path.exists():
                return web.FileResponse(path)
            raise web.HTTPNotFound()

        return serve

    app.add_routes([
        web.get("/", page("index.html")), web.get("/dashboard", page("dashboard.html")),
        web.static("/static", static_dir),
    ])
