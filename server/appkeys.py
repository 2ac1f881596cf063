"""Typed ``web.AppKey`` s under which ``create_app`` stores the application's parts.

Route modules import these keys instead of ``server.app`` so that the app
factory can import the route modules without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from server.config import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from prometheus_client import CollectorRegistry

    from server.auth import Authenticator
    from server.channels import Authorizer
    from server.dispatch import HandlerTable
    from server.node import Node

SETTINGS = web.AppKey("settings", Settings)
NODE: web.AppKey["Node"] = web.AppKey("node")
AUTH: web.AppKey["Authenticator"] = web.AppKey("auth")
HANDLER_TABLE: web.AppKey["HandlerTable"] = web.AppKey("handler_table")
AUTHORIZER_TABLE: web.AppKey["Mapping[str, Authorizer]"] = web.AppKey("authorizer_table")
METRICS: web.AppKey["CollectorRegistry"] = web.AppKey("metrics")
