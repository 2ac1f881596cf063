"""Where each channel the node holds stands: the last publication delivered, and gap fill.

The broker's pub/sub is fast but not reliable: a lost connection (a Redis
blip, ``CLIENT KILL``, a failover) silently drops what was published
meanwhile. The streams are reliable: every publication has its offset and is
kept in the channel's history. So the node remembers, per held channel, the
offset and epoch of the last publication it delivered, and every publication
from the broker goes through :meth:`ChannelPositions.on_publication`:

* the next offset of the same epoch is delivered at once (the common case);
* an offset already delivered is dropped (a duplicate of what a fill read);
* anything else means publications were missed. The channel is *filled*: the
  missed ones are read from its stream, from the last offset delivered, and
  delivered in order; live publications that arrive meanwhile wait, and follow.

A fill also starts when the broker reports a gap (``on_gap`` after a pub/sub
reconnect), and when a periodic position check (:meth:`check`, batched: one
round trip for every held channel) twice finds the stream ahead of what was
delivered, which catches a lost publication that nothing follows.

Only when the stream cannot cover the gap (its epoch changed: Redis restarted
empty or the stream expired; the gap outran the history; or the stream is
behind what was delivered, as after a failover to a Redis replica that had not
received the last publications) is ``lost`` called: the node then tells each
subscriber to resubscribe with recovery (``unsubscribe`` push, code
``RESUBSCRIBE``). Nobody is disconnected.

Pure bookkeeping and one background read per fill; the node supplies the
callbacks (deliver, read, lost) and the task spawner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine

from server.broker.base import BrokerUnavailable, Publication, StreamPosition

log = logging.getLogger("stagewire.positions")

#: Reads of one fill before it gives up on a stream that keeps failing.
FILL_ATTEMPTS = 20
FILL_RETRY_DELAY = 0.1
FILL_RETRY_MAX_DELAY = 2.0

Read = Callable[[str, StreamPosition], Awaitable[tuple[list[Publication], StreamPosition]]]


class _Channel:
    """What was delivered of one held channel."""

    __slots__ = ("offset", "epoch", "waiting", "ahead", "waiters")

    def __init__(self) -> None:
        self.offset = 0
        self.epoch: str | None = None  # None: nothing known yet
        # While a fill runs: live publications held back until it is done.
        self.waiting: list[Publication] | None = None
        # What the last position check saw beyond ``offset`` (a second look decides).
        self.ahead: int | None = None
        # (offset, callback): called once ``offset`` is delivered (or the channel is reset).
        self.waiters: list[tuple[int, Callable[[], None]]] = []


class ChannelPositions:
    """Per held channel: last delivered position, fills, and position checks.

    Args:
        deliver: hands one publication to the hub.
        read: reads a channel's stream after a position: ``(publications, top)``.
        position: reads a channel's current position (for checks).
        lost: the stream cannot cover what the channel missed; subscribers must
            resubscribe.
        spawn: runs a background task the node tracks.
    """

    def __init__(
        self,
        deliver: Callable[[Publication], None],
        read: Read,
        position: Callable[[str], Awaitable[StreamPosition]],
        lost: Callable[[str], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self._deliver = deliver
        self._read = read
        self._position = position
        self._lost = lost
        self._spawn = spawn
        self._channels: dict[str, _Channel] = {}
        self.fills = 0  # fills started (for /metrics and tests)
        self.filled = 0  # publications a fill delivered
        self.resets = 0  # channels whose subscribers had to resubscribe

    # -- what the node holds ------------------------------------------------------

    def hold(self, channel: str) -> None:
        """The broker delivers ``channel`` from now on."""
        self._channels.setdefault(channel, _Channel())

    def release(self, channel: str) -> None:
        """The broker no longer delivers ``channel``."""
        state = self._channels.pop(channel, None)
        if state is not None:
            _call_waiters(state, None)

    def seen(self, channel: str, position: StreamPosition) -> None:
        """A position read of the channel (a subscribe): the start, if nothing was delivered yet."""
        state = self._channels.get(channel)
        if state is not None and state.epoch is None:
            state.offset, state.epoch = position.offset, position.epoch

    def when_delivered(self, channel: str, position: StreamPosition, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything up to ``position`` was delivered (at once if it was).

        A new subscriber's reply may report a position that the broker's
        pub/sub has not delivered yet; it goes live only once it has, so it
        gets neither a duplicate nor a gap.
        """
        state = self._channels.get(channel)
        if (state is None or state.epoch != position.epoch or state.offset >= position.offset):
            callback()
        else:
            state.waiters.append((position.offset, callback))

    # -- from the broker -----------------------------------------------------------

    def on_publication(self, pub: Publication) -> None:
        state = self._channels.get(pub.channel)
        if state is None:
            self._deliver(pub)  # not held (a late message): nothing to keep in order
            return
        if state.waiting is not None:
            state.waiting.append(pub)
        elif pub.epoch == state.epoch and pub.offset == state.offset + 1:
            self._delivered(state, pub)
        elif state.epoch is None:
            self._delivered(state, pub)  # the first one: nothing known to compare with
        elif pub.epoch == state.epoch and pub.offset <= state.offset:
            pass  # delivered already, by a fill
        else:
            self._fill(pub.channel, state, [pub])

    def on_gap(self, channels: list[str]) -> None:
        """The broker may have lost publications of ``channels``: fill each from its stream."""
        for channel in channels:
            state = self._channels.get(channel)
            if state is not None and state.waiting is None and state.epoch is not None:
                self._fill(channel, state, [])

    async def check(self) -> None:
        """Compare every held channel's stream position with what was delivered (one batched read)."""
        channels = [c for c, s in self._channels.items() if s.epoch is not None and s.waiting is None]
        # What was delivered as the reads went out: more may be delivered while they are on their way.
        delivered = [self._channels[c].offset for c in channels]
        results = await asyncio.gather(*(self._position(c) for c in channels), return_exceptions=True)
        for channel, top, sent_at in zip(channels, results, delivered):
            state = self._channels.get(channel)
            if state is None or state.waiting is not None or state.epoch is None:
                continue
            if isinstance(top, BaseException):
                if not isinstance(top, BrokerUnavailable):
                    log.warning("position check of %s failed: %r", channel, top)
                continue
            if top.epoch != state.epoch or top.offset < sent_at:
                self._fill(channel, state, [])  # the fill finds the epoch changed, or the stream behind, and says so
            elif top.offset <= state.offset:
                state.ahead = None
            elif state.ahead is not None and state.offset < state.ahead:
                # Still short of what the last check saw: not in flight, lost.
                state.ahead = None
                self._fill(channel, state, [])
            else:
                state.ahead = top.offset  # may be on its way: look again next time

    # -- filling ---------------------------------------------------------------------

    def _delivered(self, state: _Channel, pub: Publication) -> None:
        state.offset, state.epoch = pub.offset, pub.epoch
        self._deliver(pub)
        if state.waiters:
            _call_waiters(state, pub.offset)

    def _fill(self, channel: str, state: _Channel, waiting: list[Publication]) -> None:
        state.waiting = waiting
        self.fills += 1
        self._spawn(self._run_fill(channel, state))

    async def _run_fill(self, channel: str, state: _Channel) -> None:
        try:
            await self._fill_from_stream(channel, state)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("filling %s failed", channel)
            if self._channels.get(channel) is state:
                self._reset(channel, state, None)

    async def _fill_from_stream(self, channel: str, state: _Channel) -> None:
        delay = FILL_RETRY_DELAY
        attempts = rounds = 0
        while self._channels.get(channel) is state:
            assert state.epoch is not None and state.waiting is not None
            try:
                pubs, top = await self._read(channel, StreamPosition(state.offset, state.epoch))
            except BrokerUnavailable:
                attempts += 1
                if attempts >= FILL_ATTEMPTS:
                    raise
                await asyncio.sleep(delay)
                delay = min(FILL_RETRY_MAX_DELAY, delay * 2)
                continue
            if self._channels.get(channel) is not state:
                return  # released meanwhile
            if top.epoch != state.epoch:
                log.warning("channel %s: its stream was reset (epoch %s -> %s)", channel, state.epoch, top.epoch)
                self._reset(channel, state, top)
                return
            if top.offset < state.offset:
                # Behind what was delivered, in the same epoch: a Redis replica promoted before it
                # had the last publications. Their offsets will be used again, by new ones that
                # must not be taken for what was delivered.
                log.warning("channel %s: its stream went back from offset %d to %d (publications lost "
                            "with a failed-over Redis master)", channel, state.offset, top.offset)
                self._reset(channel, state, top)
                return
            missed = [p for p in pubs if p.offset > state.offset]
            if (missed and missed[0].offset != state.offset + 1) or (not missed and top.offset > state.offset):
                log.warning("channel %s: publications after offset %d are no longer in its history",
                            channel, state.offset)
                self._reset(channel, state, top)
                return
            for pub in missed:
                if pub.offset == state.offset + 1:
                    self._delivered(state, pub)
                    self.filled += 1
            if state.offset < top.offset:
                continue  # more than one read's worth
            # Caught up with the stream: now what arrived live meanwhile, in order.
            waiting, state.waiting = state.waiting, None
            for index, pub in enumerate(waiting):
                if pub.epoch != state.epoch:
                    # Published in a stream that began after our read: it was reset.
                    state.waiting = waiting[index:]
                    self._reset(channel, state, StreamPosition(pub.offset - 1, pub.epoch))
                    return
                if pub.offset == state.offset + 1:
                    self._delivered(state, pub)
                elif pub.offset > state.offset:
                    state.waiting = waiting[index:]  # missed some again: read once more
                    break
            if state.waiting is None:
                return
            rounds += 1
            if rounds >= FILL_ATTEMPTS:
                raise RuntimeError("the stream and pub/sub keep disagreeing")

    def _reset(self, channel: str, state: _Channel, top: StreamPosition | None) -> None:
        """The stream cannot cover the gap: subscribers resubscribe; go on from ``top``."""
        self.resets += 1
        waiting, state.waiting = state.waiting or [], None
        state.ahead = None
        if top is not None:
            state.offset, state.epoch = top.offset, top.epoch
        else:
            state.epoch = None
        _call_waiters(state, None)
        self._lost(channel)
        for pub in waiting:
            if pub.epoch == state.epoch and pub.offset == state.offset + 1:
                self._delivered(state, pub)


def _call_waiters(state: _Channel, offset: int | None) -> None:
    """Call the waiters up to ``offset`` (all of them for None)."""
    due = [w for w in state.waiters if offset is None or w[0] <= offset]
    if not due:
        return
    state.waiters = [w for w in state.waiters if offset is not None and w[0] > offset]
    for _, callback in due:
        callback()
