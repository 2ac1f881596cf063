"""The ``rpc`` command: a client's call that the backend answers (the RPC proxy).

    → {"id": 4, "type": "rpc", "method": "orders.list", "data": {"page": 2}}
    ← {"id": 4, "result": {"data": [...]}}

Registered in ``handlers.HANDLERS`` like every command; without ``[proxy]
rpc`` it answers 104 (method not found).
"""

from __future__ import annotations

from typing import Any

import pydantic

from server import protocol
from server.dispatch import Context, Handler, HandlerTable, Params


class RpcParams(Params):
    method: str = pydantic.Field(min_length=1, max_length=128)
    data: Any = None


async def rpc(ctx: Context, params: RpcParams) -> dict[str, Any]:
    protocol.check_json_compatible(params.data)
    return {"data": await ctx.node.proxy.rpc(ctx.conn, params.method, params.data)}


HANDLERS: HandlerTable = {"rpc": Handler(RpcParams, rpc)}
