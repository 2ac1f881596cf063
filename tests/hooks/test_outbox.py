"""The outbox on every database: group commit, order, attempts and dead letters, leases, retry."""

from __future__ import annotations

import asyncio

from models.webhook import DEAD, PENDING, WebhookEvent
from server.hooks import outbox
from server.hooks.outbox import Outbox, OutboxRow


def row(webhook: str, i: int, channel: str = "chat:a") -> OutboxRow:
    return OutboxRow(webhook, f"e{i}", "publish", channel, f'{{"i":{i}}}', 1_000 + i)


async def test_rows_are_stored_in_groups_and_read_back_in_order(db):
    committed: list[set[str]] = []
    box = Outbox(max_batch=100, queue_max=10_000, on_commit=committed.append)
    await box.start()
    try:
        for i in range(250):
            box.put([row("a", i), row("b", i)])
        assert await box.flush(10)
    finally:
        await box.close()
    assert box.stored == 500 and box.commits <= 5  # a few transactions, not 500
    assert set().union(*committed) == {"a", "b"}
    head = await outbox.head("a", 1000)
    assert [r.event_id for r in head] == [f"e{i}" for i in range(250)]
    assert [r.payload for r in head[:2]] == ['{"i":0}', '{"i":1}']


async def test_a_full_queue_drops_and_counts():
    box = Outbox(max_batch=10, queue_max=3, on_commit=lambda hooks: None)  # never started: nothing drains
    assert box.put([row("a", 1), row("a", 2)]) is True
    assert box.put([row("a", 3), row("a", 4)]) is False
    assert (box.queued, box.dropped) == (2, 2)


async def test_failures_count_attempts_until_dead_and_retry_brings_them_back(db):
    await outbox._insert([row("a", i) for i in range(3)] + [row("b", 9)])
    ids = [r.id for r in await outbox.head("a", 10)]
    assert await outbox.failed(ids[:2], "answered 500", 5_000, max_attempts=2) == 0
    assert await outbox.failed(ids[:2], "answered 503", 6_000, max_attempts=2) == 2
    pending = await outbox.head("a", 10)
    assert [r.id for r in pending] == ids[2:]  # the dead ones no longer hold the others up
    dead = await outbox.dead_letters()
    assert [(r.id, r.attempts, r.last_error, r.state) for r in dead] == [
        (ids[0], 2, "answered 503", DEAD), (ids[1], 2, "answered 503", DEAD)]
    summary = {s["webhook"]: s for s in await outbox.summary()}
    assert summary["a"]["pending"] == 1 and summary["a"]["dead"] == 2 and summary["b"]["dead"] == 0
    assert summary["a"]["oldest_pending_ms"] == 1002
    assert await outbox.retry("b") == 0
    assert await outbox.retry(ids=[ids[1]]) == 1
    assert await outbox.retry("a") == 1
    again = await outbox.head("a", 10)
    assert [(r.id, r.attempts, r.next_attempt_ms, r.state) for r in again] == [
        (i, 0, 0, PENDING) for i in ids]
    await outbox.delivered(ids)
    assert await WebhookEvent.filter(webhook="a").count() == 0


async def test_one_node_at_a_time_holds_a_webhooks_lease(db):
    assert await outbox.lease("w", "node-a", 1_000, 2_000) is True
    assert await outbox.lease("w", "node-b", 1_500, 2_500) is False  # a's lease runs
    assert await outbox.lease("w", "node-a", 1_600, 2_600) is True  # renewed
    assert await outbox.lease("w", "node-a", 1_600, 2_600) is True  # again within the millisecond
    assert await outbox.lease("w", "node-b", 2_700, 3_700) is True  # lapsed: taken over
    assert await outbox.lease("w", "node-a", 2_800, 3_800) is False
    await outbox.release_lease("w", "node-b")
    results = await asyncio.gather(*(outbox.lease("v", f"n{i}", 10, 20) for i in range(5)))
    assert sum(results) == 1
