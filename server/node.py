"""The node: one Stagewire server process and its single delivery path.

    publish → broker → node.on_publication → hub.broadcast → connection writers

Every publication takes this path, even on one machine with the memory broker,
so a single node behaves exactly like a member of a cluster. The node keeps
the registry of local connections (by user and by session), asks the broker
to hold a channel when the hub reports its first local subscriber (and to
drop it when the last one left, rolling back on failure), and carries out
cluster-wide control messages such as "disconnect this user".

What happens (connects, subscriptions, publications, departures) is told to
``self.events``, a :class:`~server.hooks.base.EventSink` that the hooks part
supplies (webhooks); the node neither waits for it nor knows where it leads.
``self.proxy`` is the backend's say (:class:`~server.hooks.base.Proxy`),
asked by the handshake and the handlers, never by the node itself.

Errors of the broker, the presence store and the durable log are
:class:`~server.errors.StagewireError` s with their own codes, so they pass
through here to the client unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Mapping, Sequence

from aiohttp import web

from server import channels, protocol
from server.auth.identity import Identity
from server.broker.base import Broker, BrokerUnavailable, Publication, Stream, StreamPosition
from server.config import NamespaceSettings, Settings
from server.connection import Connection, State
from server.durable import DurableLog
from server.errors import CloseCode, CommandError, ErrorCode, UnsubscribeCode
from server.expiry import Deadlines, Expiries
from server.hooks.base import NO_EVENTS, NO_PROXY, EventSink, Proxy
from server.hub import Hub
from server.ops.counters import Counters, LatencyHistogram
from server.presence.base import PresenceStore
from server.positions import ChannelPositions
from server.presence.tracker import PresenceTracker
from server.protocol import Encoding
from server.tasks import stop_tasks
from server.writer import FlushScheduler

log = logging.getLogger("stagewire.node")

#: Seconds the node's own background tasks get to stop at close.
STOP_TIMEOUT = 2.0
#: Seconds the handlers of aborted connections get to finish at shutdown.
ABORT_WAIT = 0.2


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
        self.flusher = FlushScheduler(asyncio.get_running_loop(), settings.client.write_delay)
        self.hub: Hub[Connection] = Hub(self.flusher.mark_group)
        self.durable = DurableLog(broker, max_batch=settings.database.group_commit_max)
        self.expiries = Expiries(asyncio.get_running_loop())
        # A new WebSocket connection must send connect within connect_timeout (server/websocket.py).
        self.connect_deadlines: Deadlines[Connection] = Deadlines(
            asyncio.get_running_loop(), settings.client.connect_timeout, _connect_timed_out)
        self.counters = Counters()
        self.publish_latency = LatencyHistogram()
        self.connections: dict[str, Connection] = {}
        self._by_user: ConnectionIndex = ConnectionIndex()
        self._by_session: ConnectionIndex = ConnectionIndex()
        # Channels the broker delivers to this node, and a lock per channel while
        # a subscribe or unsubscribe of it is in flight.
        self._held: set[str] = set()
        self._hold_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # What was delivered of each held channel; fills gaps from the streams.
        self.positions = ChannelPositions(
            self._deliver, self._read_missed, self._stream_position, self._resubscribe_everyone, self.spawn
        )
        self._checker: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self.presence = PresenceTracker(
            presence, broker, settings.namespaces, settings.broker.presence_ttl, self.spawn
        )
        self.shutting_down = False
        self._drained = False  # shutdown ran to its end (while shutting_down)
        # Handshakes between the upgrade and the connect reply (server.websocket, [server] max_handshakes).
        self.handshaking = 0
        self.events: EventSink = NO_EVENTS
        self.proxy: Proxy = NO_PROXY
        self._control_listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._control_lost_listeners: list[Callable[[], None]] = []
        # After the listeners: a bound authorizer may listen to control messages.
        self.authorizers: Mapping[str, channels.Authorizer] = channels.bind_authorizers(authorizers or {}, self)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self)
        await self.durable.start()
        self._pinger = asyncio.create_task(self._ping_forever(), name="node-ping")
        self._checker = asyncio.create_task(self._check_positions_forever(), name="node-position-check")
        self._presence_task = asyncio.create_task(
            self.presence.run(lambda: list(self.connections.values()), self.held_channels),
            name="node-presence",
        )

    async def shutdown(self, timeout: float) -> None:
        """Tell every client to reconnect elsewhere, then wait (bounded) for them to go.

        Once done, a second call returns at once while the node still refuses
        connections (the process's own stop drains before aiohttp's
        ``on_shutdown`` asks again).
        """
        if self.shutting_down and self._drained:
            return
        self.shutting_down = True
        self._drained = False
        try:
            await self._drain(timeout)
        finally:
            self._drained = True

    async def _drain(self, timeout: float) -> None:
        conns = list(self.connections.values())
        spread = self.settings.server.shutdown_reconnect_after
        hint = (spread[0], spread[1]) if spread[1] > 0 else None
        # No task per connection: each gets its push and close frame in one write,
        # and a single deadline bounds the wait for the peers' close frames.
        for conn in conns:
            conn.close_now(CloseCode.SHUTDOWN, "server shutting down", hint)
        if not conns:
            return
        _, late = await asyncio.wait([c.finished for c in conns], timeout=timeout)
        if late:
            # Peers that did not take their close in time: drop them, so that
            # their handlers end now rather than when aiohttp cancels them.
            for conn in conns:
                if not conn.finished.done():
                    conn.abort()
            await asyncio.wait(late, timeout=ABORT_WAIT)

    async def close(self) -> None:
        own = [t for t in (self._pinger, self._checker, self._presence_task) if t is not None]
        await stop_tasks([*own, *self._tasks], STOP_TIMEOUT)
        await self.presence.store.close()
        await self.durable.close()
        await self.broker.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that the node tracks and cancels on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- connections ------------------------------------------------------------

    def connect(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, encoding: Encoding, remote: str | None
    ) -> Connection:
        """A new connection of this node, registered (call :meth:`unregister` when it ends)."""
        conn = Connection(
            ws, transport, encoding, remote,
            settings=self.settings.client, flusher=self.flusher, counters=self.counters, spawn=self.spawn,
            expiries=self.expiries,
        )
        self.connections[conn.id] = conn
        self.counters.connections_accepted += 1
        return conn

    def adopt(self, conn: Connection) -> Connection:
        """Register a connection that another protocol shell made (Pusher, SSE); as :meth:`connect`."""
        self.connections[conn.id] = conn
        self.counters.connections_accepted += 1
        return conn

    def set_identity(self, conn: Connection, identity: Identity) -> None:
        """Give a connection its identity (on connect or refresh) and index it by user and session."""
        old = conn.identity
        if old is not None:
            self._by_user.discard(old.username, conn)
            self._by_session.discard(old.session_id, conn)
        conn.authenticate(identity)
        self._by_user.add(identity.username, conn)
        self._by_session.add(identity.session_id, conn)
        if old is None:
            self.events.connected(conn)

    def unregister(self, conn: Connection) -> None:
        """Forget a connection entirely; safe to call whatever state it is in."""
        self.connections.pop(conn.id, None)
        conn.detach()
        identity = conn.identity
        if identity is not None:
            self._by_user.discard(identity.username, conn)
            self._by_session.discard(identity.session_id, conn)
        subscribed = list(conn.subscriptions)
        for channel in self.hub.remove_all(conn):
            self.spawn(self._release_quietly(channel))
        self.presence.leave_all(conn, subscribed)
        for channel in subscribed:
            self.events.unsubscribed(conn, channel)
        code, reason = conn.closed_with or (conn.ws.close_code, "")
        self.events.disconnected(conn, code, reason)

    def connections_of(self, username: str) -> set[Connection]:
        """This node's connections of ``username``."""
        return self._by_user.get(username)

    def user_count(self) -> int:
        """Distinct users with a connection on this node."""
        return len(self._by_user)

    # -- channels ---------------------------------------------------------------

    def namespace(self, channel: str) -> NamespaceSettings:
        return channels.namespace_of(channel, self.settings.namespaces)

    def stream(self, ns: NamespaceSettings) -> Stream:
        """Where the namespace's publications are numbered and kept: the durable log or the broker."""
        return self.durable if ns.persist else self.broker

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
        self.hub.add(conn, channel)
        try:
            if channel not in self._held:
                # The first local subscriber, or one arriving while the first one's
                # broker subscribe is in flight: either way, wait until it is held.
                await self._reconcile(channel)
            stream = self.stream(ns)
            if recover_since is None:
                sub = Subscription(await stream.position(channel), None, [])
            else:
                sub = await self._recover(stream, channel, recover_since, ns)
            self.positions.seen(channel, sub.position)
            sub.joined = await self.presence.join(conn, channel)
            return sub
        except BaseException:
            if self.hub.remove(conn, channel):
                await self._release(channel)
            raise

    async def _recover(
        self, stream: Stream, channel: str, since: StreamPosition, ns: NamespaceSettings
    ) -> Subscription:
        # A broker keeps at most history_size of them; the durable log keeps every one.
        limit = max(ns.history_size, ns.recover_max, 1)
        pubs, top = await stream.history(channel, since=since, limit=limit)
        pubs = [p for p in pubs if p.offset <= top.offset]
        complete = since.epoch == top.epoch and _contiguous(pubs, since.offset, top.offset - since.offset)
        # Never a partial replay: either every missed publication, or none.
        return Subscription(top, complete, pubs if complete else [])

    def activate(self, conn: Connection, channel: str, subscription: Subscription) -> None:
        """Make a subscription live once its reply is queued; announce the join.

        It goes live once the node delivered everything up to the position the
        reply reported (pub/sub may lag behind the stream the reply read), and
        buffers until then: no duplicate, no gap.
        """
        covered = subscription.position
        self.positions.when_delivered(channel, covered, lambda: self.hub.activate(conn, channel, covered.offset))
        if channel in conn.subscriptions:
            self.events.subscribed(conn, channel)
        if subscription.joined and conn.identity is not None:
            self.presence.announce("join", channel, conn.identity.username)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int, reverse: bool
    ) -> tuple[list[Publication], StreamPosition]:
        return await self.stream(self.namespace(channel)).history(
            channel, since=since, limit=limit, reverse=reverse
        )

    async def unsubscribe(
        self, conn: Connection, channel: str, reason: str | None = None, code: UnsubscribeCode = UnsubscribeCode.SERVER
    ) -> None:
        """End a subscription; with a ``reason`` the server ended it, and the client is told (with ``code``)."""
        self.namespace(channel)  # an unknown namespace is an error here too
        if channel not in conn.subscriptions:
            raise CommandError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel}")
        # Removed and told before any await, so nothing more of the channel reaches it.
        last = self.hub.remove(conn, channel)
        if reason is not None:
            conn.send(protocol.unsubscribe_push(channel, reason, code))
        if last:
            await self._release(channel)
        self.events.unsubscribed(conn, channel)
        await self.presence.leave(conn, channel)

    async def publish(
        self,
        channel: str,
        data: Any,
        info: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Publish through the channel's stream (durable namespaces: stored first); never a silent drop."""
        ns = self.namespace(channel)
        started = time.perf_counter()
        position = await self.stream(ns).publish(
            channel, data, info=info, history=channels.history_options(ns), idempotency_key=idempotency_key
        )
        self.publish_latency.observe(time.perf_counter() - started)
        if not position.already:
            self.events.published(channel, position, data, info)
        return position

    async def presence_of(self, channel: str) -> dict[str, int]:
        """Users present in ``channel`` across the cluster, with their connection counts."""
        return await self.presence.store.users(channel)

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        return await self.presence.store.stats(channel)

    # -- what the broker holds ---------------------------------------------------

    def held_channels(self) -> set[str]:
        """Channels the broker currently delivers to this node."""
        return set(self._held)

    async def _release(self, channel: str) -> None:
        """The hub's last subscriber of ``channel`` left: let the broker drop it."""
        await self._reconcile(channel)

    async def _release_quietly(self, channel: str) -> None:
        try:
            await self._reconcile(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("broker unsubscribe of %s failed; will retry on resubscribe", channel, exc_info=True)

    async def _reconcile(self, channel: str) -> None:
        """Make the broker hold ``channel`` exactly when the hub wants it.

        One call at a time per channel; each compares what the hub wants now
        with what the broker holds, so racing subscribes and unsubscribes
        settle on the right state.
        """
        lock = self._hold_locks.get(channel)
        if lock is None:
            lock = self._hold_locks[channel] = asyncio.Lock()
        try:
            async with lock:
                wanted = self.hub.wanted(channel)
                if wanted and channel not in self._held:
                    await self.broker.subscribe(channel)
                    self._held.add(channel)
                    self.positions.hold(channel)
                elif not wanted and channel in self._held:
                    self._held.discard(channel)
                    self.positions.release(channel)
                    await self.broker.unsubscribe(channel)
        finally:
            if not lock.locked() and not lock._waiters:
                self._hold_locks.pop(channel, None)

    # -- control ------------------------------------------------------------------

    async def disconnect_user(self, username: str, reason: str = "disconnected by the server") -> None:
        """Disconnect every connection of ``username`` on every node."""
        await self._control({"op": "disconnect", "user": username, "reason": reason})

    async def disconnect_session(self, session_id: str, reason: str = "logged out") -> None:
        """Disconnect every connection of one login session, on every node."""
        await self._control({"op": "disconnect", "session": session_id, "reason": reason})

    def on_control_message(self, op: str, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener`` for every control message ``op`` from any node (this one included).

        ``disconnect`` messages reach listeners too, after the node closed the
        connections they name (a cache of sessions forgets them).
        """
        self._control_listeners.setdefault(op, []).append(listener)

    def on_control_lost(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when control messages may have been missed (the broker reconnected)."""
        self._control_lost_listeners.append(listener)

    @property
    def control_healthy(self) -> bool:
        """Whether control messages from other nodes can arrive now."""
        return self.broker.healthy

    async def broadcast_control(self, op: str, payload: dict[str, Any]) -> None:
        """Send an application control message to every node (e.g. to drop a cache)."""
        await self._control({**payload, "op": op})

    async def _control(self, message: dict[str, Any]) -> None:
        try:
            await self.broker.publish_control(message)
        except BrokerUnavailable:
            # Still act locally; other nodes re-check the session when a client reconnects.
            self.on_control(message)
            raise

    # -- BrokerHandler ------------------------------------------------------------

    def on_publication(self, pub: Publication) -> None:
        self.positions.on_publication(pub)

    def _deliver(self, pub: Publication) -> None:
        """Fan one publication out to the local subscribers, in the order ``positions`` keeps."""
        message = protocol.pub_push(pub.channel, pub.offset, pub.data, pub.info)
        counters = self.counters
        delivered = self.hub.broadcast(pub.channel, message)
        counters.publications += 1
        counters.deliveries += delivered
        counters.messages_out += delivered

    def on_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        self.counters.messages_out += self.hub.broadcast(channel, protocol.presence_push(kind, channel, info))

    def on_control(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "disconnect":
            self._disconnect(message)
        listeners = self._control_listeners.get(op) if isinstance(op, str) else None
        if not listeners and op != "disconnect":
            log.warning("unknown control message %r", op)
        for listener in listeners or ():
            try:
                listener(message)
            except Exception:
                log.exception("control listener for %s failed", op)

    def on_control_gap(self) -> None:
        """Control messages may have been missed: whoever caches what they revoke forgets it."""
        for listener in self._control_lost_listeners:
            try:
                listener()
            except Exception:
                log.exception("control-lost listener failed")

    def _disconnect(self, message: dict[str, Any]) -> None:
        reason = str(message.get("reason") or "disconnected")
        if "session" in message:
            targets = self._by_session.get(str(message["session"]))
            code = CloseCode.SESSION_REVOKED
        else:
            targets = self._by_user.get(str(message.get("user", "")))
            code = CloseCode.FORCE_DISCONNECT
        for conn in targets:
            conn.close(code, reason)

    def on_gap(self, channels_: Sequence[str]) -> None:
        """The broker may have lost publications: fill them in from the streams (see server/positions.py)."""
        self.positions.on_gap(list(channels_))

    # -- gap fill -------------------------------------------------------------------

    async def _read_missed(self, channel: str, since: StreamPosition) -> tuple[list[Publication], StreamPosition]:
        ns = self.namespace(channel)
        limit = max(ns.history_size, ns.recover_max, 1)
        return await self.stream(ns).history(channel, since=since, limit=limit)

    async def _stream_position(self, channel: str) -> StreamPosition:
        return await self.stream(self.namespace(channel)).position(channel)

    def _resubscribe_everyone(self, channel: str) -> None:
        """The stream cannot cover what ``channel`` missed: each subscriber resubscribes and recovers.

        Each live subscription ends now, told with ``RESUBSCRIBE``, so nothing
        of the channel's new stream reaches it before its resubscribe reply.
        """
        reason = "publications were missed: resubscribe and recover"
        for conn in self.hub.subscribers(channel):
            if self.hub.remove(conn, channel):
                self.spawn(self._release_quietly(channel))
            conn.send(protocol.unsubscribe_push(channel, reason, UnsubscribeCode.RESUBSCRIBE))
            self.events.unsubscribed(conn, channel)
            self.spawn(self.presence.leave(conn, channel))

    async def _check_positions_forever(self) -> None:
        interval = self.settings.broker.position_check_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if self.broker.healthy:
                try:
                    await self.positions.check()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("position check failed")

    # -- heartbeat ------------------------------------------------------------------

    async def _ping_forever(self) -> None:
        """Send an application-level ping so browser clients can detect a dead server.

        The same sweep is the heartbeat that finds dead clients
        (:meth:`Connection.heartbeat`: a WebSocket ping, and a peer silent
        since the previous one is dropped), instead of a timer per connection.
        """
        interval = self.settings.client.ping_interval
        encoded = {enc: protocol.encode(protocol.PING_PUSH, enc) for enc in protocol.Encoding}
        while True:
            await asyncio.sleep(interval)
            for conn in list(self.connections.values()):
                if conn.state is State.CONNECTED:
                    conn.send_encoded(encoded[conn.encoding])
                conn.heartbeat()

    def channel_counts(self) -> Mapping[str, int]:
        return dict(self.hub.channels())


def _connect_timed_out(conn: Connection) -> None:
    conn.close(CloseCode.CONNECT_TIMEOUT, "no connect command in time")


def _contiguous(pubs: list[Publication], after: int, count: int) -> bool:
    """Whether ``pubs`` are exactly the ``count`` offsets following ``after``."""
    return len(pubs) == count and all(p.offset == after + i + 1 for i, p in enumerate(pubs))


class ConnectionIndex:
    """Key (a user, a session) → this node's connections with it.

    Most keys have one connection: it is kept as it is. From a second one on,
    the members are the keys of a dict: from 5 members on it is smaller than a
    set (by ``sys.getsizeof``: a set of 5,000 takes 512 KiB, a dict 144 KiB),
    and one key, such as a service account's session, may hold every
    connection of the node.
    """

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: dict[str, Connection | dict[Connection, None]] = {}

    def __len__(self) -> int:
        return len(self._map)

    def add(self, key: str, conn: Connection) -> None:
        current = self._map.get(key)
        if current is None:
            self._map[key] = conn
        elif isinstance(current, dict):
            current[conn] = None
        elif current is not conn:
            self._map[key] = {current: None, conn: None}

    def discard(self, key: str, conn: Connection) -> None:
        current = self._map.get(key)
        if current is conn:
            del self._map[key]
        elif isinstance(current, dict):
            current.pop(conn, None)
            if len(current) == 1:
                self._map[key] = next(iter(current))
            elif not current:
                del self._map[key]

    def get(self, key: str) -> set[Connection]:
        """A copy: the caller may close them as it goes."""
        current = self._map.get(key)
        if current is None:
            return set()
        return set(current) if isinstance(current, dict) else {current}
