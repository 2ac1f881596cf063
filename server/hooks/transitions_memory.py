"""``MemoryTransitions``: the :class:`~server.hooks.transitions.TransitionStore` of one node.

With the memory broker there is one node, so the cluster's view is this
process's. The rules are the Redis store's (the same conformance suite runs
against both): a hold of an item not reported present reports it; the last
release starts the grace; a hold within the grace cancels it. When the node
stops, whatever it still reported present is reported gone, since nothing of
this state survives the process.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable, Sequence

from server.hooks.transitions import Item, Op

PRESENT = -1.0


class MemoryTransitions:
    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace = grace
        self._clock = clock
        self._holders: dict[Item, int] = {}
        # Reported present: PRESENT while held, else the deadline of its grace.
        self._state: dict[Item, float] = {}
        self._deadlines: list[tuple[float, int, Item]] = []
        self._seq = 0

    async def start(self) -> None:
        pass

    async def apply(self, ops: Sequence[Op]) -> list[bool]:
        results = []
        for hold, item in ops:
            if hold:
                self._holders[item] = self._holders.get(item, 0) + 1
                results.append(item not in self._state)
                self._state[item] = PRESENT
                continue
            count = self._holders.get(item, 0) - 1
            if count > 0:
                self._holders[item] = count
            else:
                self._holders.pop(item, None)
                if self._state.get(item) == PRESENT:
                    deadline = self._clock() + self._grace
                    self._state[item] = deadline
                    self._seq += 1
                    heapq.heappush(self._deadlines, (deadline, self._seq, item))
            results.append(False)
        return results

    async def settle(self) -> list[Item]:
        now = self._clock()
        gone = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, item = heapq.heappop(self._deadlines)
            if self._state.get(item) == deadline and item not in self._holders:
                del self._state[item]
                gone.append(item)
        return gone

    async def heartbeat(self) -> bool:
        return True

    async def close(self) -> list[Item]:
        gone = list(self._state)
        self._state.clear()
        self._holders.clear()
        self._deadlines.clear()
        return gone
