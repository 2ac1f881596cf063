"""Channel commands: ``subscribe``, ``unsubscribe`` and ``publish``."""

from __future__ import annotations

from typing import Any

import pydantic

from server import channels, protocol
from server.dispatch import Context, Params

Channel = pydantic.constr(min_length=3, max_length=255)


class SubscribeParams(Params):
    channel: Channel  # type: ignore[valid-type]


class UnsubscribeParams(Params):
    channel: Channel  # type: ignore[valid-type]


class PublishParams(Params):
    channel: Channel  # type: ignore[valid-type]
    data: Any = pydantic.Field(...)


async def subscribe(ctx: Context, params: SubscribeParams) -> dict[str, Any]:
    ns = ctx.node.namespace(params.channel)
    channels.check_subscribe(ctx.user, params.channel, ns)
    position = await ctx.node.subscribe(ctx.conn, params.channel)
    return {"offset": position.offset, "epoch": position.epoch}


async def unsubscribe(ctx: Context, params: UnsubscribeParams) -> dict[str, Any]:
    await ctx.node.unsubscribe(ctx.conn, params.channel)
    return {}


async def publish(ctx: Context, params: PublishParams) -> dict[str, Any]:
    ns = ctx.node.namespace(params.channel)
    channels.check_publish(ctx.user, params.channel, ns, params.channel in ctx.conn.subscriptions)
    protocol.check_json_compatible(params.data)
    position = await ctx.node.publish(params.channel, params.data, {"user": ctx.user.username})
    return {"offset": position.offset, "epoch": position.epoch}
