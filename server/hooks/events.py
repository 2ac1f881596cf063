"""``HookEvents``: the node's :class:`~server.hooks.base.EventSink`, turned into outbox rows.

Each event is built once, as a JSON object (the shapes are in docs/hooks.md)::

    {"id": "5f0c…", "name": "subscribe", "time_ms": 1718000000000,
     "channel": "chat:lobby", "client": "3f9c…", "user": "alice"}

and stored once per webhook that asked for its ``name`` and whose
``channels`` filter takes its channel (events without a channel, ``connect``
and ``disconnect``, pass every filter). Nothing is built for an event no
webhook wants.

Subscriptions also feed the cluster transitions (:mod:`server.hooks.transitions`)
of the channels some webhook watches for ``channel_occupied``/``vacated`` or
``member_added``/``removed``; their decisions come back through
:meth:`HookEvents.transition`.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import orjson

from server.config import WebhookSettings
from server.hooks.outbox import Outbox, OutboxRow

if TYPE_CHECKING:
    from server.broker.base import StreamPosition
    from server.connection import Connection
    from server.hooks.transitions import Transitions

log = logging.getLogger("stagewire.hooks.events")

OCCUPANCY = frozenset({"channel_occupied", "channel_vacated"})
MEMBERS = frozenset({"member_added", "member_removed"})
_CACHE_MAX = 10_000


def channel_matches(patterns: Sequence[str], channel: str) -> bool:
    """Whether a ``channels`` filter takes ``channel``: empty takes all.

    ``"chat"`` is a namespace (every ``chat:…`` channel), ``"room:*"`` a
    pattern (``*``, ``?`` and ``[…]`` as in shell globs), anything else one
    channel by its full name.
    """
    if not patterns:
        return True
    for pattern in patterns:
        if ":" not in pattern and not any(c in pattern for c in "*?["):
            if channel.startswith(pattern + ":"):
                return True
        elif any(c in pattern for c in "*?["):
            if fnmatch.fnmatchcase(channel, pattern):
                return True
        elif channel == pattern:
            return True
    return False


class HookEvents:
    """Routes every event to the webhooks that want it; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        webhooks: Sequence[WebhookSettings],
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self._hooks = [(hook.name, frozenset(hook.events), hook.channels) for hook in webhooks]
        self._outbox = outbox
        self._clock = clock
        self._routes: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._watched: dict[str, tuple[bool, bool]] = {}
        # Subscriptions reported live, per connection: only those end with an unsubscribe.
        self._subs: dict[str, set[str]] = {}
        self.transitions: Transitions | None = None
        self.on_connect: list[Callable[[Connection], None]] = []
        self.on_disconnect: list[Callable[[Connection], None]] = []
        self.emitted = 0
        self.unencodable = 0
        self._seq = 0

    # -- routing ------------------------------------------------------------------

    def wants(self, name: str, channel: str | None) -> tuple[str, ...]:
        """The webhooks that take event ``name`` of ``channel``."""
        if not self._hooks:
            return ()
        key = (name, channel)
        route = self._routes.get(key)
        if route is None:
            route = tuple(
                hook for hook, events, patterns in self._hooks
                if name in events and (channel is None or channel_matches(patterns, channel))
            )
            if len(self._routes) >= _CACHE_MAX:
                self._routes.clear()
            self._routes[key] = route
        return route

    def watched(self, channel: str) -> tuple[bool, bool]:
        """Whether some webhook wants ``channel``'s (occupancy, member) transitions."""
        found = self._watched.get(channel)
        if found is None:
            found = (any(self.wants(n, channel) for n in OCCUPANCY), any(self.wants(n, channel) for n in MEMBERS))
            if len(self._watched) >= _CACHE_MAX:
                self._watched.clear()
            self._watched[channel] = found
        return found

    def emit(self, name: str, channel: str | None, fields: dict[str, Any]) -> None:
        """Store event ``name`` for every webhook that wants it."""
        hooks = self.wants(name, channel)
        if not hooks:
            return
        now_ms = int(self._clock() * 1000)
        # Unique without a syscall: node ids are random per process start.
        self._seq += 1
        event_id = f"{self.node_id}-{self._seq:x}"
        event: dict[str, Any] = {"id": event_id, "name": name, "time_ms": now_ms}
        if channel is not None:
            event["channel"] = channel
        event.update(fields)
        try:
            payload = orjson.dumps(event).decode()
        except (TypeError, orjson.JSONEncodeError):
            # Never the caller's problem: the publication (say) is already accepted.
            self.unencodable += 1
            log.warning("a %s event could not be encoded as JSON and was dropped", name, exc_info=True)
            return
        self.emitted += 1
        self._outbox.put([OutboxRow(hook, event_id, name, channel, payload, now_ms) for hook in hooks])

    # -- EventSink ------------------------------------------------------------------

    def connected(self, conn: Connection) -> None:
        for listener in self.on_connect:
            listener(conn)
        if self.wants("connect", None):  # every connect passes here: no event dict for nobody
            self.emit("connect", None, self._who(conn))

    def disconnected(self, conn: Connection, code: int | None, reason: str) -> None:
        self._subs.pop(conn.id, None)
        for listener in self.on_disconnect:
            listener(conn)
        if conn.identity is None or not self.wants("disconnect", None):
            return  # it never connected (nobody was told it came), or no webhook wants it
        self.emit("disconnect", None, {**self._who(conn), "code": code, "reason": reason})

    def subscribed(self, conn: Connection, channel: str) -> None:
        if conn.identity is None or not self._hooks:
            return
        self._subs.setdefault(conn.id, set()).add(channel)
        self.emit("subscribe", channel, self._who(conn))
        self._hold(channel, conn.identity.username, True)

    def unsubscribed(self, conn: Connection, channel: str) -> None:
        subs = self._subs.get(conn.id)
        if subs is None or channel not in subs or conn.identity is None:
            return
        subs.discard(channel)
        self.emit("unsubscribe", channel, self._who(conn))
        self._hold(channel, conn.identity.username, False)

    def published(self, channel: str, position: StreamPosition, data: Any, info: dict[str, Any] | None) -> None:
        fields: dict[str, Any] = {"offset": position.offset, "epoch": position.epoch, "data": data}
        if info is not None:
            fields["info"] = info
        self.emit("publish", channel, fields)

    def client_published(self, conn: Connection, channel: str, position: StreamPosition, data: Any) -> None:
        self.emit("client_event", channel, {
            **self._who(conn), "data": data, "offset": position.offset, "epoch": position.epoch,
        })

    # -- cluster transitions ------------------------------------------------------------

    def transition(self, name: str, channel: str, user: str | None) -> None:
        """A transition the cluster decided (called by :class:`~server.hooks.transitions.Transitions`)."""
        self.emit(name, channel, {} if user is None else {"user": user})

    def _hold(self, channel: str, user: str, hold: bool) -> None:
        transitions = self.transitions
        if transitions is None:
            return
        occupancy, members = self.watched(channel)
        if occupancy:
            (transitions.hold if hold else transitions.release)(channel, None)
        if members:
            (transitions.hold if hold else transitions.release)(channel, user)

    def _who(self, conn: Connection) -> dict[str, Any]:
        identity = conn.identity
        return {"client": conn.id, "user": identity.username if identity else None, "node": self.node_id}
