"""The node: one Stagewire server process and its single delivery path.

    publish → broker → node.on_publication → hub.broadcast → connection writers

Every publication takes this path, even on one machine with the memory broker,
so a single node behaves exactly like a member of a cluster. The node also
keeps the registry of local connections (by user and by session) and carries
out cluster-wide control messages such as "disconnect this user".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Mapping, Sequence

from server import channels, protocol
from server.broker.base import Broker, BrokerUnavailable, Publication, StreamPosition
from server.config import NamespaceSettings, Settings
from server.connection import Connection, State
from server.durable import DurableLog
from server.errors import CloseCode, CommandError, ErrorCode
from server.hub import Hub
from server.metrics import LatencyHistogram
from server.presence.base import PresenceStore
from server.presence.tracker import PresenceTracker
from server.writer import FlushScheduler

if TYPE_CHECKING:
    from server.auth import Identity

log = logging.getLogger("stagewire.node")


@dataclass(slots=True)
class Subscription:
    """The outcome of a subscribe: the position, what recovery found, whether a join is due."""

    position: StreamPosition
    recovered: bool | None  # None: no recovery was asked for
    publications: list[Publication]
    joined: bool = False


class Node:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        presence: PresenceStore,
        authorizers: Mapping[str, channels.Authorizer] | None = None,
    ) -> None:
        self.id = secrets.token_hex(6)
        self.settings = settings
        self.broker = broker
        self.hub = Hub(broker)
        self.durable = DurableLog(broker, max_batch=settings.database.group_commit_max)
        self.flusher = FlushScheduler(asyncio.get_running_loop(), settings.client.write_delay)
        self.connections: dict[str, Connection] = {}
        self._by_user: dict[str, set[Connection]] = {}
        self._by_session: dict[str, set[Connection]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._pinger: asyncio.Task | None = None
        self._presence_task: asyncio.Task | None = None
        self.presence = PresenceTracker(
            presence, broker, settings.namespaces, settings.broker.presence_ttl, self.spawn
        )
        self.shutting_down = False
        self._control_listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        # After the listeners: a bound authorizer may listen to control messages.
        self.authorizers: Mapping[str, channels.Authorizer] = channels.bind_authorizers(authorizers or {}, self)
        # Plain counters, read by /metrics and the stats publisher (server/metrics.py,
        # server/stats.py). Deliveries are added once per publication, not per subscriber.
        self.stats = {
            "slow_disconnects": 0, "publications": 0, "deliveries": 0, "connections_accepted": 0,
            "commands": 0, "command_errors": 0, "messages_out": 0,
        }
        self.publish_latency = LatencyHistogram()

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self)
        await self.durable.start()
        self._pinger = asyncio.create_task(self._ping_forever(), name="node-ping")
        self._presence_task = asyncio.create_task(
            self.presence.run(lambda: list(self.connections.values()), lambda: self.hub.held_channels),
            name="node-presence",
        )

    async def shutdown(self, timeout: float) -> None:
        """Tell every client to reconnect elsewhere, then wait (bounded) for them to go."""
        self.shutting_down = True
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(CloseCode.SHUTDOWN, "server shutting down")
        if conns:
            await asyncio.wait([c.finished for c in conns], timeout=timeout)

    async def close(self) -> None:
        own = [t for t in (self._pinger, self._presence_task) if t is not None]
        for task in [*own, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *own, return_exceptions=True)
        await self.presence.store.close()
        await self.durable.close()
        await self.broker.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run a background task that the node tracks and cancels on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- connections ------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self.stats["connections_accepted"] += 1

    def set_identity(self, conn: Connection, identity: Identity) -> None:
        """Give a connection its identity (on connect or refresh) and index it by user and session."""
        old = conn.identity
        if old is not None:
            _discard(self._by_user, old.username, conn)
            _discard(self._by_session, old.session_id, conn)
        conn.authenticate(identity)
        self._by_user.setdefault(identity.username, set()).add(conn)
        self._by_session.setdefault(identity.session_id, set()).add(conn)

    def unregister(self, conn: Connection) -> None:
        """Forget a connection entirely; safe to call whatever state it is in."""
        self.connections.pop(conn.id, None)
        conn.detach()
        identity = conn.identity
        if identity is not None:
            _discard(self._by_user, identity.username, conn)
            _discard(self._by_session, identity.session_id, conn)
        self.presence.leave_all(conn, self.hub.remove_connection(conn))

    def user_count(self) -> int:
        """Distinct users with a connection on this node."""
        return len(self._by_user)

    def count_slow(self) -> None:
        self.stats["slow_disconnects"] += 1

    # -- channels ---------------------------------------------------------------

    def namespace(self, channel: str) -> NamespaceSettings:
        return channels.namespace_of(channel, self.settings.namespaces)

    async def authorize_subscribe(self, identity: Identity, channel: str) -> NamespaceSettings:
        """The channel's namespace, once ``identity`` may read it (subscribe, history, presence)."""
        ns = self.namespace(channel)
        await channels.authorize_subscribe(identity, channel, ns, self.authorizers)
        return ns

    async def subscribe(
        self, conn: Connection, channel: str, recover_since: StreamPosition | None = None
    ) -> Subscription:
        """Start a pending subscription (permissions already checked).

        Returns the channel's position and, when ``recover_since`` is given,
        the publications missed since then, all or none. The caller must then
        call :meth:`activate` right after queueing its reply.
        """
        ns = self.namespace(channel)
        if channel in conn.subscriptions:
            raise CommandError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel}")
        if len(conn.subscriptions) >= self.settings.client.max_subscriptions:
            raise CommandError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions")
        try:
            await self.hub.subscribe(conn, channel)
            if recover_since is None:
                sub = Subscription(await self._position(channel, ns), None, [])
            else:
                sub = await self._recover(channel, recover_since, ns)
            sub.joined = await self.presence.join(conn, channel)
            return sub
        except BaseException as exc:
            await self.hub.unsubscribe(conn, channel)
            if isinstance(exc, BrokerUnavailable):
                raise CommandError(ErrorCode.UNAVAILABLE, "broker temporarily unavailable") from None
            raise

    async def _position(self, channel: str, ns: NamespaceSettings) -> StreamPosition:
        if ns.persist:
            return await self.durable.position(channel)
        return await self.broker.position(channel)

    async def _recover(self, channel: str, since: StreamPosition, ns: NamespaceSettings) -> Subscription:
        if ns.persist:
            top = await self.durable.position(channel)
            gap = top.offset - since.offset
            if since.epoch != top.epoch or not 0 <= gap <= max(ns.history_size, ns.recover_max):
                return Subscription(top, False, [])
            pubs, _ = await self.broker.history(channel, since=since, limit=gap or 1)
            if not _contiguous(pubs, since.offset, gap):
                # Older than the broker's window: the database has every durable publication.
                pubs = await self.durable.read(channel, since, gap)
        else:
            # One broker call: the window and its top (an unknown epoch gives no publications).
            pubs, top = await self.broker.history(channel, since=since, limit=max(ns.history_size, 1))
            gap = top.offset - since.offset
        pubs = [p for p in pubs if p.offset <= top.offset]
        complete = since.epoch == top.epoch and _contiguous(pubs, since.offset, gap)
        # Never a partial replay: either every missed publication, or none.
        return Subscription(top, complete, pubs if complete else [])

    def activate(self, conn: Connection, channel: str, subscription: Subscription) -> None:
        """Make a subscription live once its reply is queued; announce the join."""
        self.hub.activate(conn, channel, subscription.position.offset)
        if subscription.joined and conn.identity is not None:
            self.presence.announce("join", channel, conn.identity.username)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int, reverse: bool
    ) -> tuple[list[Publication], StreamPosition]:
        ns = self.namespace(channel)
        try:
            pubs, top = await self.broker.history(channel, since=since, limit=limit, reverse=reverse)
            if not ns.persist:
                return pubs, top
            top = await self.durable.position(channel)
            start = since if since is not None else StreamPosition(0, top.epoch)
            if start.epoch != top.epoch:
                return [], top
            wanted = min(limit, max(0, top.offset - start.offset))
            # The answer must be the exact run of offsets asked for: the newest
            # ``wanted`` ones (reverse), or the ``wanted`` ones right after ``start``.
            expected = (
                list(range(top.offset, top.offset - wanted, -1))
                if reverse
                else list(range(start.offset + 1, start.offset + wanted + 1))
            )
            if [p.offset for p in pubs[:wanted]] != expected:
                # The broker keeps a window; the database keeps everything.
                pubs = await self.durable.read(channel, start, wanted, reverse=reverse)
            return pubs[:wanted], top
        except BrokerUnavailable:
            raise CommandError(ErrorCode.UNAVAILABLE, "broker temporarily unavailable") from None

    async def unsubscribe(self, conn: Connection, channel: str, reason: str | None = None) -> None:
        """End a subscription; with a ``reason`` the server ended it, and the client is told."""
        self.namespace(channel)  # an unknown namespace is an error here too
        if channel not in conn.subscriptions:
            raise CommandError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel}")
        await self.hub.unsubscribe(conn, channel)
        if reason is not None:
            conn.send(protocol.unsubscribe_push(channel, reason))
        await self.presence.leave(conn, channel)

    async def publish(
        self,
        channel: str,
        data: Any,
        info: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Publish through the broker (durable namespaces: stored first); never a silent drop."""
        ns = self.namespace(channel)
        history = channels.history_options(ns)
        started = time.perf_counter()
        try:
            if ns.persist:
                position = await self.durable.publish(channel, data, info, history, idempotency_key)
            else:
                position = await self.broker.publish(
                    channel, data, info=info, history=history, idempotency_key=idempotency_key
                )
        except BrokerUnavailable:
            raise CommandError(ErrorCode.UNAVAILABLE, "broker temporarily unavailable") from None
        self.publish_latency.observe(time.perf_counter() - started)
        return position

    async def presence_of(self, channel: str) -> dict[str, int]:
        """Users present in ``channel`` across the cluster, with their connection counts."""
        try:
            return await self.presence.store.users(channel)
        except BrokerUnavailable:
            raise CommandError(ErrorCode.UNAVAILABLE, "presence temporarily unavailable") from None

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        try:
            return await self.presence.store.stats(channel)
        except BrokerUnavailable:
            raise CommandError(ErrorCode.UNAVAILABLE, "presence temporarily unavailable") from None

    # -- control ------------------------------------------------------------------

    async def disconnect_user(self, username: str, reason: str = "disconnected by the server") -> None:
        """Disconnect every connection of ``username`` on every node."""
        await self._control({"op": "disconnect", "user": username, "reason": reason})

    async def disconnect_session(self, session_id: str, reason: str = "logged out") -> None:
        """Disconnect every connection of one login session, on every node."""
        await self._control({"op": "disconnect", "session": session_id, "reason": reason})

    def on_control_message(self, op: str, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener`` for every control message ``op`` from any node (this one included)."""
        self._control_listeners.setdefault(op, []).append(listener)

    async def broadcast_control(self, op: str, payload: dict[str, Any]) -> None:
        """Send an application control message to every node (e.g. to drop a cache)."""
        await self._control({**payload, "op": op})

    async def _control(self, message: dict[str, Any]) -> None:
        try:
            await self.broker.publish_control(message)
        except BrokerUnavailable:
            # Still act locally; other nodes re-check the session when a client reconnects.
            self.on_control(message)
            raise CommandError(ErrorCode.UNAVAILABLE, "broker temporarily unavailable") from None

    # -- BrokerHandler ------------------------------------------------------------

    def on_publication(self, pub: Publication) -> None:
        message = protocol.pub_push(pub.channel, pub.offset, pub.data, pub.info)
        stats = self.stats
        delivered = self.hub.broadcast(pub.channel, message)
        stats["publications"] += 1
        stats["deliveries"] += delivered
        stats["messages_out"] += delivered

    def on_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        self.stats["messages_out"] += self.hub.broadcast(channel, protocol.presence_push(kind, channel, info))

    def on_control(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op != "disconnect":
            listeners = self._control_listeners.get(op) if isinstance(op, str) else None
            if not listeners:
                log.warning("unknown control message %r", op)
            for listener in listeners or ():
                try:
                    listener(message)
                except Exception:
                    log.exception("control listener for %s failed", op)
            return
        reason = str(message.get("reason") or "disconnected")
        if "session" in message:
            targets = self._by_session.get(message["session"], set())
            code = CloseCode.SESSION_REVOKED
        else:
            targets = self._by_user.get(message.get("user", ""), set())
            code = CloseCode.FORCE_DISCONNECT
        for conn in list(targets):
            conn.close(code, reason)

    def on_gap(self, channels_: Sequence[str]) -> None:
        """The broker may have lost publications: subscribers must recover."""
        for channel in channels_:
            for conn in list(self.hub.subscribers(channel)):
                conn.close(CloseCode.INSUFFICIENT_STATE, "publications may have been missed")

    # -- heartbeat ------------------------------------------------------------------

    async def _ping_forever(self) -> None:
        """Send an application-level ping so browser clients can detect a dead server.

        Dead clients are detected with WebSocket ping/pong by aiohttp's heartbeat.
        """
        interval = self.settings.client.ping_interval
        encoded = {enc: protocol.encode(protocol.PING_PUSH, enc) for enc in protocol.Encoding}
        while True:
            await asyncio.sleep(interval)
            for conn in list(self.connections.values()):
                if conn.state is State.CONNECTED:
                    conn.send_encoded(encoded[conn.encoding])

    def channel_counts(self) -> Mapping[str, int]:
        return dict(self.hub.channels())


def _contiguous(pubs: list[Publication], after: int, count: int) -> bool:
    """Whether ``pubs`` are exactly the ``count`` offsets following ``after``."""
    return len(pubs) == count and all(p.offset == after + i + 1 for i, p in enumerate(pubs))


def _discard(index: dict[str, set[Connection]], key: str, conn: Connection) -> None:
    conns = index.get(key)
    if conns is not None:
        conns.discard(conn)
        if not conns:
            del index[key]
