"""The hub: which local connections are subscribed to which channel, and fan-out.

The hub is pure: it does no I/O and knows no broker. It keeps the node's
subscriptions and answers the two questions the node asks the broker about:
is this a channel's first local subscriber (:meth:`Hub.add` returns True),
and did its last one just leave (:meth:`Hub.remove` returns True). The node
makes the broker calls and rolls back on failure.

``broadcast`` is the fan-out: encode once per encoding, hand the bytes to
every subscriber's writer, await nobody. Subscribers are kept grouped by
encoding, so the loop over them has no branch: per subscriber, one call of
its writer's ``append`` (a list's own ``append``: no Python frame, no
bookkeeping). Each group is then handed to ``touched`` once, which has its
writers flushed (``FlushScheduler.mark_group``); a subscriber that leaves a
group before that flush asks for its own (``Output.schedule``).

A new subscription starts *pending*: while the node reads the channel's
position or history from the broker, messages for that subscriber are
buffered instead of sent, so the ``subscribe`` reply always comes first and
recovered publications are never duplicated or reordered. :meth:`activate`
then delivers the buffer (skipping what the reply already covered) and makes
the subscription live.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Collection, Generic, Iterator, Mapping, Protocol, TypeVar

from server import protocol
from server.protocol import Encoding


class Output(Protocol):
    """Where a subscriber's encoded messages go (a :class:`~server.writer.Writer`)."""

    @property
    def append(self) -> Callable[[bytes], None]:
        """Queues one payload, to be flushed when its group is (``touched``)."""
        ...

    def schedule(self) -> None:
        """Flush on its own whatever ``append`` queued: it left its group."""


class Subscriber(Protocol):
    """What the hub needs of a connection."""

    @property
    def encoding(self) -> Encoding: ...

    @property
    def writer(self) -> Output: ...

    #: Its channels, kept by the hub (:func:`with_channel`): a tuple while there are few, then a set.
    subscriptions: Collection[str]

    def send(self, message: Mapping[str, Any]) -> None: ...


Enqueue = Callable[[bytes], None]
S = TypeVar("S", bound=Subscriber)

#: Up to this many channels a subscriber's are a tuple (48 bytes for one, where a set
#: takes 216 even for one); beyond it, a set, whose look-ups stay constant.
SMALL = 8


def with_channel(channels: Collection[str], channel: str) -> Collection[str]:
    """``channels`` and ``channel``, as the smallest fit (which may be ``channels`` itself)."""
    if isinstance(channels, set):
        channels.add(channel)
        return channels
    if channel in channels:
        return channels
    return (*channels, channel) if len(channels) < SMALL else {*channels, channel}


def without_channel(channels: Collection[str], channel: str) -> Collection[str]:
    if isinstance(channels, set):
        channels.discard(channel)
        return channels
    return tuple(c for c in channels if c != channel) if channel in channels else channels


def _untouched(group: Collection[Any]) -> None:
    pass


class Hub(Generic[S]):
    """Channel → local subscribers, pending and live.

    Args:
        touched: called with each group of subscribers (a collection of them)
            that ``broadcast`` appended to, so that their writers get flushed.
    """

    __slots__ = ("_live", "_pending", "_touched")

    def __init__(self, touched: Callable[[Collection[S]], None] = _untouched) -> None:
        # channel → encoding → subscriber → its writer's append (bound once, called per message)
        self._live: dict[str, dict[Encoding, dict[S, Enqueue]]] = {}
        self._touched = touched
        # channel → subscriber → messages held back until activate
        self._pending: dict[str, dict[S, list[Mapping[str, Any]]]] = {}

    def add(self, sub: S, channel: str) -> bool:
        """Add a pending subscription; True if ``channel`` had no local subscriber before.

        Messages for ``sub`` on ``channel`` are buffered until :meth:`activate`.
        """
        # One string per channel name, however many subscribers each parsed their own copy of it.
        channel = sys.intern(channel)
        first = not self.wanted(channel)
        self._pending.setdefault(channel, {})[sub] = []
        sub.subscriptions = with_channel(sub.subscriptions, channel)
        return first

    def activate(self, sub: S, channel: str, covered_offset: int) -> None:
        """Make a pending subscription live, sending what was buffered meanwhile.

        Publications up to ``covered_offset`` were reported in the subscribe
        reply (as its position or as recovered publications) and are skipped.
        """
        pending = self._pending.get(channel)
        buffered = pending.pop(sub, None) if pending is not None else None
        if pending is not None and not pending:
            del self._pending[channel]
        if buffered is None or channel not in sub.subscriptions:
            return
        for message in buffered:
            if message.get("type") == "pub" and message["offset"] <= covered_offset:
                continue
            sub.send(message)
        groups = self._live.setdefault(channel, {})
        groups.setdefault(sub.encoding, {})[sub] = sub.writer.append

    def remove(self, sub: S, channel: str) -> bool:
        """Remove one subscription; True when ``channel`` has no local subscriber left."""
        sub.subscriptions = without_channel(sub.subscriptions, channel)
        pending = self._pending.get(channel)
        if pending is not None:
            pending.pop(sub, None)
            if not pending:
                del self._pending[channel]
        groups = self._live.get(channel)
        if groups is not None:
            members = groups.get(sub.encoding)
            if members is not None:
                if members.pop(sub, None) is not None:
                    sub.writer.schedule()  # what it was sent before leaving still goes out
                if not members:
                    del groups[sub.encoding]
            if not groups:
                del self._live[channel]
        return not self.wanted(channel)

    def remove_all(self, sub: S) -> list[str]:
        """Drop every subscription of a closing connection; returns the channels now without subscribers."""
        return [channel for channel in list(sub.subscriptions) if self.remove(sub, channel)]

    def wanted(self, channel: str) -> bool:
        """Whether ``channel`` has a local subscriber, pending or live."""
        return channel in self._live or channel in self._pending

    def broadcast(self, channel: str, message: Mapping[str, Any]) -> int:
        """Queue ``message`` for every local subscriber of ``channel``; returns how many."""
        pending = self._pending.get(channel)
        if pending:
            for buffer in pending.values():
                buffer.append(message)
        groups = self._live.get(channel)
        if not groups:
            return 0
        count = 0
        touched = self._touched
        for encoding, members in groups.items():
            payload = protocol.encode(message, encoding)
            for append in members.values():
                append(payload)
            touched(members)
            count += len(members)
        return count

    def subscribers(self, channel: str) -> list[S]:
        """The live subscribers of ``channel``."""
        return [sub for members in self._live.get(channel, {}).values() for sub in members]

    def channels(self) -> Iterator[tuple[str, int]]:
        """``(channel, live local subscriber count)`` for every channel with live subscribers."""
        for channel, groups in self._live.items():
            yield channel, sum(len(members) for members in groups.values())

    def wanted_channels(self) -> set[str]:
        """Every channel with a local subscriber, pending or live."""
        return self._live.keys() | self._pending.keys()
