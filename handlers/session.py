"""Session commands: ``ping`` and ``refresh`` (new credentials without reconnecting)."""

from __future__ import annotations

import time
from typing import Any

import pydantic

from server.dispatch import Context, Params
from server.errors import CommandError, ErrorCode


class PingParams(Params):
    pass


class RefreshParams(Params):
    # Without a token, a connection the connect proxy vouched for asks the refresh proxy.
    token: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)


async def ping(ctx: Context, params: PingParams) -> dict[str, Any]:
    return {}


async def refresh(ctx: Context, params: RefreshParams) -> dict[str, Any]:
    if params.token is None:
        identity = await ctx.node.proxy.refresh(ctx.conn)
        return {"expires_in": identity.expires_in()}
    identity = await ctx.auth.verify(params.token)
    if identity.user_id != ctx.user.user_id or ctx.user.proxied:
        raise CommandError(ErrorCode.PERMISSION_DENIED, "token belongs to another user")
    ctx.node.set_identity(ctx.conn, identity)
    return {"expires_in": max(0, int(identity.expires_at - time.time()))}
