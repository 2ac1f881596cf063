"""Channel commands: ``subscribe`` (with recovery), ``unsubscribe``, ``publish``, ``history``."""

from __future__ import annotations

from typing import Any

import pydantic

from server import channels, protocol
from server.broker.base import Publication, StreamPosition
from server.dispatch import Context, Params, Pipelined, Reply
from server.errors import CommandError, ErrorCode

Channel = channels.ChannelName


class Position(Params):
    offset: int = pydantic.Field(ge=0)
    epoch: str = pydantic.Field(max_length=64)


class SubscribeParams(Params):
    channel: Channel
    recover: bool = False
    offset: int | None = pydantic.Field(default=None, ge=0)
    epoch: str | None = pydantic.Field(default=None, max_length=64)



class HistoryParams(Params):
    channel: Channel
    since: Position | None = None
    limit: int = pydantic.Field(default=100, ge=0, le=1000)
    reverse: bool = False


class UnsubscribeParams(Params):
    channel: Channel


class PublishParams(Params):
    channel: Channel
    data: Any = pydantic.Field(...)
    idempotency_key: str | None = pydantic.Field(default=None, min_length=1, max_length=128)


def publication(pub: Publication) -> dict[str, Any]:
    """A publication as it appears in ``subscribe`` and ``history`` results."""
    out: dict[str, Any] = {"offset": pub.offset, "data": pub.data}
    if pub.info is not None:
        out["info"] = pub.info
    return out


async def subscribe(ctx: Context, params: SubscribeParams) -> Reply:
    ns = await ctx.node.authorize_subscribe(ctx.user, params.channel)
    await ctx.node.proxy.authorize_subscribe(ctx.conn, params.channel, ns)
    since = None
    if params.recover:
        missing = {name: "required with recover: the last one seen"
                   for name in ("offset", "epoch") if getattr(params, name) is None}
        if missing:
            raise CommandError(ErrorCode.BAD_REQUEST, "recover needs the last offset and epoch seen", missing)
        assert params.offset is not None and params.epoch is not None
        since = StreamPosition(params.offset, params.epoch)
    sub = await ctx.node.subscribe(ctx.conn, params.channel, since)
    result: dict[str, Any] = {"offset": sub.position.offset, "epoch": sub.position.epoch}
    if sub.recovered is not None:
        result["recovered"] = sub.recovered
        result["publications"] = [publication(p) for p in sub.publications]
    conn, node, channel = ctx.conn, ctx.node, params.channel
    return Reply(result, after=lambda: node.activate(conn, channel, sub))


async def history(ctx: Context, params: HistoryParams) -> dict[str, Any]:
    await ctx.node.authorize_subscribe(ctx.user, params.channel)
    since = StreamPosition(params.since.offset, params.since.epoch) if params.since else None
    pubs, top = await ctx.node.history(params.channel, since, params.limit, params.reverse)
    return {"publications": [publication(p) for p in pubs], "offset": top.offset, "epoch": top.epoch}


async def unsubscribe(ctx: Context, params: UnsubscribeParams) -> dict[str, Any]:
    await ctx.node.unsubscribe(ctx.conn, params.channel)
    return {}


async def publish(ctx: Context, params: PublishParams) -> Pipelined:
    ns = ctx.node.namespace(params.channel)
    channels.check_publish(ctx.user, params.channel, ns, params.channel in ctx.conn.subscriptions)
    protocol.check_json_compatible(params.data)
    # The publish proxy may refuse, or replace the data.
    data = await ctx.node.proxy.authorize_publish(ctx.conn, params.channel, ns, params.data)
    protocol.check_json_compatible(data)
    conn, node, channel = ctx.conn, ctx.node, params.channel

    async def publish_and_tell() -> dict[str, Any]:
        position = await node.publish(channel, data, {"user": ctx.user.username}, params.idempotency_key)
        if not position.already:
            node.events.client_published(conn, channel, position, data)
        return channels.publish_result(position)

    # Run as a task of its own, started in command order; a publish takes its
    # place in the channel's order before it first suspends (see Stream), so a
    # later command's publish cannot overtake this one. Its reply keeps command order.
    return Pipelined(publish_and_tell())
