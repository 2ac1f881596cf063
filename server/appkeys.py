"""Typed ``web.AppKey`` s under which ``create_app`` stores the application's parts.

Route modules import these keys instead of ``server.app`` so that the app
factory can import the route modules without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from server.config import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from prometheus_client import CollectorRegistry

    from server.auth.sessions import Authenticator
    from server.broker.redis_client import RedisClient
    from server.channels import Authorizer
    from server.dispatch import HandlerTable
    from server.hooks.service import Hooks
    from server.node import Node
    from server.pusher.service import PusherService
    from server.sse.tickets import Tickets

SETTINGS = web.AppKey("settings", Settings)
NODE: web.AppKey["Node"] = web.AppKey("node")
AUTH: web.AppKey["Authenticator"] = web.AppKey("auth")
HANDLER_TABLE: web.AppKey["HandlerTable"] = web.AppKey("handler_table")
AUTHORIZER_TABLE: web.AppKey["Mapping[str, Authorizer]"] = web.AppKey("authorizer_table")
PUSHER: web.AppKey["PusherService"] = web.AppKey("pusher")
SSE_TICKETS: web.AppKey["Tickets"] = web.AppKey("sse_tickets")
METRICS: web.AppKey["CollectorRegistry"] = web.AppKey("metrics")
# The node's Redis client in Redis mode (shared by the broker, presence and the hooks).
REDIS: web.AppKey["RedisClient"] = web.AppKey("redis")
HOOKS: web.AppKey["Hooks"] = web.AppKey("hooks")
# The applications' OpenAPI describers (server.api.openapi.Describe), in registry order.
API_DOCS: web.AppKey[tuple[Callable[[Any], dict[str, Any]], ...]] = web.AppKey("api_docs")
