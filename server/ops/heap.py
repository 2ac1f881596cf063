"""The heap's free pages handed back to the system once connections have come and gone.

glibc's ``malloc`` keeps what a freed block leaves inside its heap, and gives
memory back only from the heap's top. A reconnect storm interleaves the
handshakes' short-lived buffers with the connections' long-lived objects, so
once it is over the freed space lies between live blocks and stays resident:
about 0.8 KiB per connection at 5,000 (``python -m bench.fanout``, see
docs/benchmarks.md). ``malloc_trim(0)`` returns every whole free page to the
system (``madvise``); it took 0.2–0.5 ms for a heap of that size. The memory
is not lost to Python: the next allocation that needs it faults a page back in.

:class:`HeapTrimmer` looks every ``[server] heap_trim_interval`` seconds and
trims when at least :data:`TRIM_CHURN` connections opened or closed since
the last trim and no handshake is in flight, so a storm is trimmed once,
after it. Go's runtime, which Centrifuge runs on, returns memory the same way
(its scavenger). Where the C library has no ``malloc_trim`` (musl, macOS),
nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from server.node import Node

log = logging.getLogger("stagewire.heap")

#: Connections opened plus closed since the last trim that make the next one worth it.
TRIM_CHURN = 256


def malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim``, or None where it has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Trims the heap after enough connections came or went, between handshakes."""

    def __init__(self, node: Node, trim: Callable[[int], int], churn: int) -> None:
        self._node = node
        self._trim = trim
        self._churn = churn
        self._accepted = node.counters.connections_accepted
        self._closed = 0

    def check(self) -> bool:
        """Trim if it is due; whether it trimmed."""
        node = self._node
        if node.handshaking:
            return False  # a storm is still on: after it
        accepted = node.counters.connections_accepted
        closed = accepted - len(node.connections)
        if (accepted - self._accepted) + (closed - self._closed) < self._churn:
            return False
        self._accepted, self._closed = accepted, closed
        self._trim(0)
        node.counters.heap_trims += 1
        return True

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
