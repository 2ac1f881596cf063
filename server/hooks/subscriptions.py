"""Subscriptions the connect proxy asks for: made before the ``connect`` reply, live right after it.

The backend's connect answer may name ``channels``; the client is subscribed
to them without asking (the backend has decided, so the namespace's subscribe
rule and the subscribe proxy are not consulted). The ``connect`` reply then
carries ``subscriptions``: per channel its ``{offset, epoch}``, or the
``error`` that kept it from being subscribed. As with a client's own
``subscribe``, the subscriptions go live only once the reply is queued, so
their publications always come after it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from server.errors import StagewireError

if TYPE_CHECKING:
    from server.connection import Connection
    from server.node import Node, Subscription

log = logging.getLogger("stagewire.hooks")


async def server_subscribe(
    node: Node, conn: Connection, channels: Sequence[str]
) -> tuple[dict[str, Any], Callable[[], None]]:
    """Subscribe ``conn`` to ``channels``: the reply's ``subscriptions``, and what makes them live."""
    result: dict[str, Any] = {}
    made: list[tuple[str, Subscription]] = []
    for channel in dict.fromkeys(channels):
        try:
            node.namespace(channel)
            sub = await node.subscribe(conn, channel)
        except StagewireError as exc:
            log.info("server-side subscription to %s failed: %s", channel, exc.message)
            result[channel] = {"error": exc.to_dict()}
            continue
        made.append((channel, sub))
        result[channel] = {"offset": sub.position.offset, "epoch": sub.position.epoch}

    def activate() -> None:
        for channel, sub in made:
            node.activate(conn, channel, sub)

    return result, activate
