"""The heap's free pages handed back to the system once connections have come and gone.

glibc's ``malloc`` keeps what a freed block leaves inside its heap, and gives
memory back only from the heap's top. A reconnect storm interleaves the
handshakes' short-lived buffers with the connections' long-lived objects, so
once it is over the freed space lies between live blocks and stays resident:
about 1.1 KiB per connection at 5,000 (``python -m bench.fanout`` with and
without the trim, docs/benchmarks.md). ``malloc_trim(0)`` returns every whole
free page to the system (``madvise``). The memory is not lost to Python: the
next allocation that needs it faults a page back in.

:class:`HeapTrimmer` looks every ``[server] heap_trim_interval`` seconds
and trims once connections came and went and the node is quiet: at least
:data:`TRIM_CHURN` connections opened or closed since the last trim, and
fewer than :data:`QUIET` events (connections, commands, publications) in the
last interval. A storm of reconnects and resubscribes is trimmed once, after
it. Never while traffic flows: a trim of a heap that a flood of publications
left in pieces takes one ``madvise`` per piece, a stall that every client
would see, and the pages it gives back are faulted in again by the next
fan-out. Go's runtime, which Centrifuge runs on, returns memory the same way
(its scavenger). Where the C library has no ``malloc_trim`` (musl, macOS),
nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from server.node import Node

#: Connections opened plus closed since the last trim that make the next one worth it.
TRIM_CHURN = 256
#: Fewer events (connections opened and closed, commands, publications) than this in the last interval: quiet.
QUIET = 32


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
    """Trims the heap once connections came and went, when the node is quiet."""

    def __init__(self, node: Node, trim: Callable[[int], int], *, churn: int = TRIM_CHURN,
                 quiet: int = QUIET) -> None:
        self._node = node
        self._trim = trim
        self._churn, self._quiet = churn, quiet
        self._churn_at_trim, self._events_at_check = self._counts()

    def _counts(self) -> tuple[int, int]:
        """Connections opened plus closed, and every event, so far."""
        counters = self._node.counters
        accepted = counters.connections_accepted
        churn = accepted + (accepted - len(self._node.connections))
        return churn, churn + counters.commands + counters.publications

    def check(self) -> bool:
        """Trim if it is due; whether it trimmed. Called once an interval."""
        churn, events = self._counts()
        recent, self._events_at_check = events - self._events_at_check, events
        if churn - self._churn_at_trim < self._churn or recent >= self._quiet:
            return False
        self._churn_at_trim = churn
        self._trim(0)
        self._node.counters.heap_trims += 1
        return True

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
