"""The heap's free pages handed back to the system once connections have come and gone.

glibc's ``malloc`` keeps what a freed block leaves inside its heap, and gives
memory back only from the heap's top. A reconnect storm interleaves the
handshakes' short-lived buffers with the connections' long-lived objects, so
once it is over the freed space lies between live blocks and stays resident:
about 0.8 KiB per connection at 5,000 (``python -m bench.fanout``, see
docs/benchmarks.md). ``malloc_trim(0)`` returns every whole free page to the
system (``madvise``); it took 0.2–0.5 ms for a heap of that size. The memory
is not lost to Python: the next allocation that needs it faults a page back in.

:class:`HeapTrimmer` looks every ``[server] heap_trim_interval`` seconds
and trims once a burst is over: at least :data:`TRIM_CHURN` events (commands,
connections opened and closed) since the last trim, and fewer than
:data:`QUIET` in the last interval. A storm of reconnects and resubscribes is
trimmed once, after it; under traffic that never quiets down, once every
:data:`TRIM_EVERY` seconds. Go's runtime, which Centrifuge runs on, returns
memory the same way (its scavenger). Where the C library has no
``malloc_trim`` (musl, macOS), nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from server.node import Node

#: Events (commands, connections opened and closed) since the last trim that make the next one worth it.
TRIM_CHURN = 256
#: Fewer events than this in the last interval: the burst is over.
QUIET = 32
#: Seconds between trims under traffic that never quiets down.
TRIM_EVERY = 60.0


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
    """Trims the heap once a burst of connections and commands is over."""

    def __init__(self, node: Node, trim: Callable[[int], int], *, churn: int = TRIM_CHURN, quiet: int = QUIET,
                 every: float = TRIM_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node
        self._trim = trim
        self._churn, self._quiet, self._every = churn, quiet, every
        self._clock = clock
        self._at_trim = self._at_check = self._events()
        self._trimmed_at = clock()

    def _events(self) -> int:
        counters = self._node.counters
        accepted = counters.connections_accepted
        return counters.commands + accepted + (accepted - len(self._node.connections))

    def check(self) -> bool:
        """Trim if it is due; whether it trimmed. Called once an interval."""
        events = self._events()
        recent, self._at_check = events - self._at_check, events
        if events - self._at_trim < self._churn:
            return False
        now = self._clock()
        if recent >= self._quiet and now - self._trimmed_at < self._every:
            return False  # still busy: after the burst
        self._at_trim, self._trimmed_at = events, now
        self._trim(0)
        self._node.counters.heap_trims += 1
        return True

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
