"""The hub: which local connections are subscribed to which channel.

The hub owns the node's subscriptions. Only two transitions reach the broker:
a channel's first local subscriber (``broker.subscribe``) and its last one
leaving (``broker.unsubscribe``). A per-channel lock serialises those broker
calls, and each call reconciles what the broker should hold with what the hub
holds, so racing subscribes and unsubscribes settle on the right state.

``broadcast`` is the fan-out: encode once per encoding, queue on every
subscriber's writer, await nobody.

A new subscription starts *pending*: while the node reads the channel's
position or history from the broker, pushes for that connection are buffered
instead of sent, so the ``subscribe`` reply always comes first and recovered
publications are never duplicated or reordered. ``activate`` then delivers the
buffer (skipping what the reply already covered) and makes the subscription live.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from server import protocol
from server.broker.base import Broker
from server.protocol import Encoding

if TYPE_CHECKING:
    from server.connection import Connection

log = logging.getLogger("stagewire.hub")


class Hub:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._subscribers: dict[str, set[Connection]] = {}
        self._pending: dict[str, dict[Connection, list[Mapping[str, Any]]]] = {}
        self._held: set[str] = set()  # channels the broker delivers to us
        self._locks: dict[str, asyncio.Lock] = {}

    async def subscribe(self, conn: Connection, channel: str) -> None:
        """Add ``conn`` to ``channel`` as pending; subscribe the node in the broker if needed.

        Pushes for ``conn`` on ``channel`` are buffered until :meth:`activate`.
        """
        self._pending.setdefault(channel, {})[conn] = []
        conn.subscriptions.add(channel)
        if channel not in self._held:
            try:
                await self._reconcile(channel)
            except BaseException:
                self._remove(conn, channel)
                raise

    def activate(self, conn: Connection, channel: str, covered_offset: int) -> None:
        """Make a pending subscription live, sending what was buffered meanwhile.

        Publications up to ``covered_offset`` were reported in the subscribe
        reply (as its position or as recovered publications) and are skipped.
        """
        pending = self._pending.get(channel)
        buffered = pending.pop(conn, None) if pending is not None else None
        if pending is not None and not pending:
            del self._pending[channel]
        if buffered is None or channel not in conn.subscriptions:
            return
        for message in buffered:
            if message.get("type") == "pub" and message["offset"] <= covered_offset:
                continue
            conn.send(message)
        self._subscribers.setdefault(channel, set()).add(conn)

    async def unsubscribe(self, conn: Connection, channel: str) -> None:
        """Remove ``conn`` from ``channel``; unsubscribe the node if it was the last."""
        if self._remove(conn, channel):
            await self._reconcile(channel)

    def remove_connection(self, conn: Connection) -> list[str]:
        """Drop every subscription of a closing connection; returns the channels it left."""
        left = list(conn.subscriptions)
        for channel in left:
            if self._remove(conn, channel):
                asyncio.get_running_loop().create_task(self._reconcile_quietly(channel))
        return left

    def broadcast(self, channel: str, message: Mapping[str, Any]) -> int:
        """Queue ``message`` for every local subscriber of ``channel``; returns how many."""
        pending = self._pending.get(channel)
        if pending:
            for buffer in pending.values():
                buffer.append(message)
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return 0
        as_json = as_msgpack = None
        for conn in subscribers:
            if conn.encoding is Encoding.JSON:
                if as_json is None:
                    as_json = protocol.encode(message, Encoding.JSON)
                conn.writer.enqueue(as_json)
            else:
                if as_msgpack is None:
                    as_msgpack = protocol.encode(message, Encoding.MSGPACK)
                conn.writer.enqueue(as_msgpack)
        return len(subscribers)

    def subscribers(self, channel: str) -> set[Connection]:
        return self._subscribers.get(channel, set())

    def channels(self) -> Iterator[tuple[str, int]]:
        """``(channel, local subscriber count)`` for every channel with subscribers."""
        for channel, subscribers in self._subscribers.items():
            if subscribers:
                yield channel, len(subscribers)

    @property
    def held_channels(self) -> set[str]:
        """Channels the broker currently delivers to this node."""
        return set(self._held)

    def _remove(self, conn: Connection, channel: str) -> bool:
        """Remove one subscription; True when the channel has no local subscriber left."""
        conn.subscriptions.discard(channel)
        pending = self._pending.get(channel)
        if pending is not None:
            pending.pop(conn, None)
            if not pending:
                del self._pending[channel]
        subscribers = self._subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(conn)
            if not subscribers:
                del self._subscribers[channel]
        return not self._wanted(channel)

    def _wanted(self, channel: str) -> bool:
        return bool(self._subscribers.get(channel) or self._pending.get(channel))

    async def _reconcile(self, channel: str) -> None:
        lock = self._locks.get(channel)
        if lock is None:
            lock = self._locks[channel] = asyncio.Lock()
        try:
            async with lock:
                wanted = self._wanted(channel)
                if wanted and channel not in self._held:
                    await self._broker.subscribe(channel)
                    self._held.add(channel)
                elif not wanted and channel in self._held:
                    self._held.discard(channel)
                    await self._broker.unsubscribe(channel)
        finally:
            if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
                self._locks.pop(channel, None)

    async def _reconcile_quietly(self, channel: str) -> None:
        try:
            await self._reconcile(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("broker unsubscribe of %s failed; will retry on resubscribe", channel, exc_info=True)
