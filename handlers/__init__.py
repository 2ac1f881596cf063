"""The registry: everything the handler applications add to the server.

``HANDLERS`` maps every WebSocket command type to the function that serves it.
``connect`` is not here: it is the handshake, handled by ``server.websocket``
before any of these can run. To add your own commands, write a module with
``Params`` models and async handler functions, and add its entries below.

``AUTHORIZERS`` decides who may read the channels of ``subscribe = "custom"``
namespaces: ``namespace → async (identity, channel) -> bool``.

``REGISTRY`` is the one value the app factory takes: the tables above, the
applications' HTTP routes (with their OpenAPI descriptions) and their own
``config.toml`` sections.
"""

from __future__ import annotations

from typing import Mapping

from handlers import channels, presence, session
from handlers.rooms import commands as rooms_commands
from handlers.rooms import routes as rooms_routes
from handlers.rooms import settings as rooms_config
from handlers.rooms.membership import MembersOnly
from server.channels import Authorizer
from server.dispatch import Handler, HandlerTable
from server.hooks import commands as hooks_commands
from server.registry import Registry

HANDLERS: HandlerTable = {
    "ping": Handler(session.PingParams, session.ping),
    "refresh": Handler(session.RefreshParams, session.refresh),
    "subscribe": Handler(channels.SubscribeParams, channels.subscribe),
    "unsubscribe": Handler(channels.UnsubscribeParams, channels.unsubscribe),
    "publish": Handler(channels.PublishParams, channels.publish),
    "history": Handler(channels.HistoryParams, channels.history),
    "presence": Handler(presence.PresenceParams, presence.presence),
    "presence_stats": Handler(presence.PresenceParams, presence.presence_stats),
    # rpc: the backend answers (the RPC proxy, server/hooks/).
    **hooks_commands.HANDLERS,
    # The rooms application (handlers/rooms): rooms.*, messages.*, typing, read.
    **rooms_commands.HANDLERS,
}

AUTHORIZERS: Mapping[str, Authorizer] = {
    # Room channels: members only, cached per node (handlers/rooms/membership.py).
    "room": MembersOnly("room"),
    "typing": MembersOnly("typing"),
}

REGISTRY = Registry(
    handlers=HANDLERS,
    authorizers=AUTHORIZERS,
    http=(rooms_routes.HTTP,),
    sections={rooms_config.SECTION: rooms_config.RoomsSettings},
)
