"""The one registration point of handler applications: ``Registry``.

``handlers.REGISTRY`` lists everything the applications add to the server,
and ``create_app`` wires it in; nothing registers itself on import, and the
server never imports an application's modules.

* ``handlers``: WebSocket command type → :class:`~server.dispatch.Handler`.
* ``authorizers``: namespace → who may read a ``subscribe = "custom"`` channel.
* ``http``: HTTP routes, each group with its OpenAPI description.
* ``sections``: the application's own ``config.toml`` sections → their dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from aiohttp import web

from server.api.openapi import Describe
from server.channels import Authorizer
from server.dispatch import HandlerTable


@dataclass(frozen=True)
class HttpRoutes:
    """A group of HTTP routes and the OpenAPI paths that describe them."""

    routes: Sequence[web.RouteDef]
    describe: Describe | None = None


@dataclass(frozen=True)
class Registry:
    """What the handler applications add to the server."""

    handlers: HandlerTable
    authorizers: Mapping[str, Authorizer] = field(default_factory=dict)
    http: Sequence[HttpRoutes] = ()
    sections: Mapping[str, type[Any]] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Registry:
        """A copy with some parts replaced (tests and embedders add their own handlers)."""
        return Registry(**{**self.__dict__, **changes})
