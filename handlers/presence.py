"""Presence commands: ``presence`` (who is here) and ``presence_stats`` (how many)."""

from __future__ import annotations

from typing import Any

from handlers.channels import Channel
from server.dispatch import Context, Params
from server.errors import CommandError, ErrorCode


class PresenceParams(Params):
    channel: Channel


async def _check(ctx: Context, channel: str) -> None:
    ns = await ctx.node.authorize_subscribe(ctx.user, channel)
    if not ns.presence:
        raise CommandError(ErrorCode.PERMISSION_DENIED, f"presence is not enabled in namespace {ns.name!r}")


async def presence(ctx: Context, params: PresenceParams) -> dict[str, Any]:
    await _check(ctx, params.channel)
    users = await ctx.node.presence_of(params.channel)
    return {"users": [{"user": u, "connections": n} for u, n in sorted(users.items())]}


async def presence_stats(ctx: Context, params: PresenceParams) -> dict[str, Any]:
    await _check(ctx, params.channel)
    clients, users = await ctx.node.presence_stats(params.channel)
    return {"clients": clients, "users": users}
