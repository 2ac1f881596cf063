"""Cluster-wide transitions: ``channel_occupied``/``vacated`` and ``member_added``/``removed``.

An *item* is a channel (``(channel, None)``) or a user in a channel
(``(channel, user)``). A node *holds* an item while it has at least one live
subscription of it (of that user, for a member). :class:`Transitions` counts
the node's own subscriptions and tells the store only about the node's first
hold and last release of each item, in the order they happened.

The :class:`TransitionStore` decides for the whole cluster, atomically:

* a hold that makes an item present anywhere, when it was not reported
  present, is reported at once (``channel_occupied``, ``member_added``);
* when the last holder anywhere releases it, the item waits ``grace``
  seconds; a hold within the grace cancels the wait and nothing is reported,
  otherwise it is reported gone (``channel_vacated``, ``member_removed``) by
  exactly one node;
* a node that dies stops refreshing its liveness; after the presence TTL
  another node releases its holds for it, and the grace runs as above.

So each transition is reported exactly once however many nodes and
connections take part, and a quick reconnect (within the grace) reports
nothing. Backends: :mod:`server.hooks.transitions_memory` (one node) and
:mod:`server.hooks.transitions_redis` (a cluster); one conformance suite
(``tests/hooks/transitions_conformance.py``) checks both.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol, Sequence

from server.tasks import stop_tasks

log = logging.getLogger("stagewire.hooks.transitions")

Item = tuple[str, "str | None"]
"""``(channel, None)`` for the channel itself, ``(channel, user)`` for a member."""

Op = tuple[bool, Item]
"""``(True, item)``: this node's first hold of ``item``; ``(False, item)``: its last release."""

RETRY_MIN, RETRY_MAX = 0.1, 5.0
BATCH = 1000  # holds and releases per store call


class TransitionStore(Protocol):
    """Where the cluster's holders and reported states live (see the module docstring)."""

    async def start(self) -> None:
        """Register this node as alive (before any hold)."""

    async def apply(self, ops: Sequence[Op]) -> list[bool]:
        """Apply this node's holds and releases in order; per op, True for a hold to report now."""

    async def settle(self) -> list[Item]:
        """Items whose grace ran out with no holder back, each returned by exactly one node."""

    async def heartbeat(self) -> bool:
        """Refresh this node's liveness and release dead nodes' holds; False if this node had been given up."""

    async def close(self) -> list[Item]:
        """Leave the cluster; items to report gone now (the memory store: everything in its grace)."""


def gone_event(item: Item) -> str:
    return "channel_vacated" if item[1] is None else "member_removed"


def present_event(item: Item) -> str:
    return "channel_occupied" if item[1] is None else "member_added"


Report = Callable[[str, str, "str | None"], None]
"""``(event name, channel, user or None)``."""


class Transitions:
    """This node's side: local counts, one ordered worker, and the settle and heartbeat loops.

    Args:
        store: the cluster's side.
        report: called with every transition decided here.
        settle_interval: seconds between checks for items whose grace ran out.
        heartbeat_interval: seconds between liveness refreshes (a third of the presence TTL).
    """

    def __init__(self, store: TransitionStore, report: Report, *, settle_interval: float,
                 heartbeat_interval: float) -> None:
        self.store = store
        self._report = report
        self._settle_interval = settle_interval
        self._heartbeat_interval = heartbeat_interval
        self._counts: dict[Item, int] = {}
        self._ops: list[Op] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._settle_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.failures = 0

    # -- the node's calls (synchronous) ----------------------------------------------

    def hold(self, channel: str, user: str | None) -> None:
        item = (channel, user)
        count = self._counts.get(item, 0) + 1
        self._counts[item] = count
        if count == 1:
            self._queue((True, item))

    def release(self, channel: str, user: str | None) -> None:
        item = (channel, user)
        count = self._counts.get(item, 0) - 1
        if count < 0:
            return
        if count == 0:
            del self._counts[item]
            self._queue((False, item))
        else:
            self._counts[item] = count

    def held(self) -> list[Item]:
        """Items this node holds now."""
        return list(self._counts)

    def _queue(self, op: Op) -> None:
        self._ops.append(op)
        self._idle.clear()
        self._wakeup.set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.start()
        except Exception:
            # The first heartbeat registers the node then (and finds nothing to hold again).
            log.warning("occupancy/member store unavailable at start", exc_info=True)
        self._tasks = [
            asyncio.create_task(self._work(), name="hooks-transitions"),
            asyncio.create_task(self._settle_forever(), name="hooks-settle"),
            asyncio.create_task(self._heartbeat_forever(), name="hooks-heartbeat"),
        ]

    async def flush(self, timeout: float) -> bool:
        """Wait (bounded) until every queued hold and release reached the store."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        flushed = await self.flush(timeout)
        await stop_tasks(self._tasks, timeout)
        if not flushed:
            # Leave our holds for the cluster to release once our liveness runs out.
            log.error("%d occupancy/member changes could not reach the store before shutdown", len(self._ops))
            return
        try:
            for item in await self.store.close():
                self._report(gone_event(item), item[0], item[1])
        except Exception:
            log.warning("leaving the transitions store failed", exc_info=True)

    # -- loops ---------------------------------------------------------------------------

    async def _work(self) -> None:
        failures = 0
        while True:
            if not self._ops:
                self._idle.set()
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            ops = self._ops[:BATCH]
            try:
                results = await self.store.apply(ops)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Kept, in order, and sent again: holds and releases are idempotent in the store.
                failures += 1
                self.failures += 1
                delay = min(RETRY_MAX, RETRY_MIN * 2 ** failures)
                log.warning("occupancy/member store unavailable; retrying %d changes in %.1fs",
                            len(ops), delay, exc_info=True)
                await asyncio.sleep(delay)
                continue
            failures = 0
            del self._ops[: len(ops)]
            for (hold, item), report in zip(ops, results):
                if hold and report:
                    self._report(present_event(item), item[0], item[1])
            if any(not hold for hold, _ in ops):
                self._settle_now.set()

    async def _settle_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._settle_now.wait(), self._settle_interval)
            except asyncio.TimeoutError:
                pass
            self._settle_now.clear()
            try:
                for item in await self.store.settle():
                    self._report(gone_event(item), item[0], item[1])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("settling occupancy/member changes failed", exc_info=True)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                alive = await self.store.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("occupancy/member heartbeat failed", exc_info=True)
                continue
            if not alive:
                # Other nodes gave us up (we were silent past the TTL) and released our holds.
                log.warning("this node was given up by the cluster; holding its %d items again", len(self._counts))
                for item in self._counts:
                    self._queue((True, item))
