"""Token expiries: one loop timer per second for many connections."""

from __future__ import annotations

import asyncio
import time

from server.expiry import EARLY, Deadlines, Expiries


class Conn:
    def __init__(self) -> None:
        self.expired_at: float | None = None

    def expired(self) -> None:
        self.expired_at = time.time()


async def test_connections_expiring_in_one_second_share_one_timer_and_all_expire():
    expiries = Expiries(asyncio.get_running_loop())
    at = time.time() + 0.2
    conns = [Conn() for _ in range(100)]
    for conn in conns:
        expiries.add(conn, at)
    assert len(expiries._buckets) <= 2 and len(expiries) == 100  # the second of ``at`` (rounded up)
    for _ in range(300):
        if all(c.expired_at is not None for c in conns):
            break
        await asyncio.sleep(0.01)
    # Never early, and at most a second late.
    assert all(at <= c.expired_at <= at + 1.1 for c in conns)
    assert len(expiries) == 0 and not expiries._buckets


async def test_a_removed_connection_does_not_expire_and_an_empty_second_drops_its_timer():
    expiries = Expiries(asyncio.get_running_loop())
    kept, removed = Conn(), Conn()
    at = time.time() + 0.1
    expiries.add(kept, at)
    key = expiries.add(removed, at)
    expiries.remove(removed, key)
    alone = Conn()
    expiries.remove(alone, expiries.add(alone, time.time() + 30))
    assert len(expiries) == 1 and len(expiries._buckets) == 1
    await asyncio.sleep(1.2)
    assert kept.expired_at is not None and removed.expired_at is None and alone.expired_at is None


async def test_an_expiry_in_the_past_fires_at_once():
    expiries = Expiries(asyncio.get_running_loop())
    conn = Conn()
    expiries.add(conn, time.time() - 5)
    await asyncio.sleep(0.05)
    assert conn.expired_at is not None


async def test_deadlines_fire_in_order_on_one_timer_and_skip_the_cancelled():
    loop = asyncio.get_running_loop()
    fired: list[tuple[int, float]] = []
    deadlines = Deadlines(loop, 0.1, lambda item: fired.append((item, loop.time())))
    started = loop.time()
    entries = [deadlines.add(i) for i in range(5)]
    entries[2].cancel()
    assert len(deadlines) == 4
    await asyncio.sleep(0.05)
    late = deadlines.add(5)  # the timer, armed for the oldest, is re-armed for the rest after it fires
    for _ in range(100):
        if len(fired) == 5:
            break
        await asyncio.sleep(0.01)
    assert [item for item, _ in fired] == [0, 1, 3, 4, 5]
    assert all(at >= started + 0.1 - EARLY for _, at in fired[:4])
    assert fired[4][1] >= late.at - EARLY
    assert len(deadlines) == 0 and deadlines._timer is None


async def test_cancelled_entries_at_the_head_go_when_the_next_is_added_not_when_due():
    loop = asyncio.get_running_loop()
    fired: list[int] = []
    deadlines = Deadlines(loop, 60.0, fired.append)
    entries = [deadlines.add(i) for i in range(1000)]
    for entry in entries[:999]:  # handshakes done in the order they came, but the last
        entry.cancel()
    deadlines.add(1000)
    assert len(deadlines._queue) == 2 and len(deadlines) == 2  # the queue holds those in flight
    entries[999].cancel()
    deadlines.add(1001)
    assert [entry.item for entry in deadlines._queue] == [1000, 1001] and fired == []
