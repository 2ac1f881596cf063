"""The webhook outbox: events are stored first, in groups, then sent by :mod:`server.hooks.sender`.

Writing works like the durable publications' writer (:mod:`server.durable`):
:meth:`Outbox.put` queues rows and returns at once; one writer task takes
everything waiting (up to ``max_batch``) and stores it with one multi-row
insert in one transaction. If the database refuses, the rows stay queued, in
order, and the writer tries again with backoff; past ``queue_max`` waiting
rows new events are dropped, counted and logged (the node must not grow
without bound while its database is away).

Once stored, an event survives restarts until its webhook answered 2xx (the
row is deleted) or it failed ``max_attempts`` times (the row turns ``dead``,
a dead letter, until :func:`retry` makes it pending again).

The functions below the class are the outbox's queries, shared by the
sender, the ``stagewire webhooks`` command and the server API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.functions import Count, Min
from models.transactions import transaction

from models.webhook import DEAD, PENDING, WebhookEvent, WebhookLease

log = logging.getLogger("stagewire.hooks.outbox")

RETRY_MIN, RETRY_MAX = 0.05, 5.0


class OutboxRow(NamedTuple):
    """One event for one webhook, as stored (a tuple: one is made per event and webhook)."""

    webhook: str
    event_id: str
    name: str
    channel: str | None
    payload: str
    created_ms: int
    state: str = PENDING
    attempts: int = 0
    next_attempt_ms: int = 0
    last_error: str | None = None


class Outbox:
    """The group-commit writer of the outbox.

    Args:
        max_batch: most rows stored in one transaction (``[database] group_commit_max``).
        queue_max: most rows waiting in memory for the database (``[hooks] queue_max``).
        on_commit: called with the webhooks that got new rows, after each commit.
    """

    def __init__(self, *, max_batch: int, queue_max: int, on_commit: Callable[[set[str]], None]) -> None:
        self._max_batch = max(1, max_batch)
        self._queue_max = queue_max
        self._on_commit = on_commit
        self._queue: list[OutboxRow] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.stored = 0
        self.dropped = 0

    @property
    def queued(self) -> int:
        """Rows waiting for the database."""
        return len(self._queue)

    def put(self, rows: Sequence[OutboxRow]) -> bool:
        """Queue rows for the next commit; False (and counted) when the queue is full."""
        if len(self._queue) + len(rows) > self._queue_max:
            self.dropped += len(rows)
            log.warning("webhook outbox queue full (%d rows): %d event rows dropped", len(self._queue), len(rows))
            return False
        self._queue.extend(rows)
        self._idle.clear()
        self._wakeup.set()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-outbox-writer")

    async def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until everything queued is stored."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Store what is queued (bounded in time), then stop the writer."""
        if self._queue and not await self.flush(timeout):
            log.error("webhook outbox: %d event rows could not be stored before shutdown", len(self._queue))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._queue:
                self._idle.set()
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            batch = self._queue[: self._max_batch]
            try:
                await _insert(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(RETRY_MAX, RETRY_MIN * 2 ** failures)
                log.warning("storing %d webhook events failed; retrying in %.2fs", len(batch), delay, exc_info=True)
                await asyncio.sleep(delay)
                continue
            failures = 0
            del self._queue[: len(batch)]
            self.commits += 1
            self.stored += len(batch)
            self._on_commit({row.webhook for row in batch})


async def _insert(rows: Sequence[OutboxRow]) -> None:
    """One multi-row insert in one transaction (as in :mod:`server.durable`)."""
    meta = WebhookEvent._meta
    async with transaction() as connection:
        executor = connection.executor_class(model=WebhookEvent, db=connection)
        columns = [meta.fields_map[meta.fields_db_projection_reverse[c]] for c in executor.regular_columns]
        values = [[field.to_db_value(getattr(row, field.model_field_name), WebhookEvent) for field in columns]
                  for row in rows]
        await connection.execute_many(executor.insert_query, values)


# -- the sender's queries --------------------------------------------------------------


async def head(webhook: str, limit: int) -> list[WebhookEvent]:
    """The oldest pending events of ``webhook``, in order."""
    return await WebhookEvent.filter(webhook=webhook, state=PENDING).order_by("id").limit(limit)


async def delivered(ids: Iterable[int]) -> None:
    await WebhookEvent.filter(id__in=list(ids)).delete()


async def failed(ids: Sequence[int], error: str, next_attempt_ms: int, max_attempts: int) -> int:
    """Count one more attempt of each event; those at ``max_attempts`` become dead. Returns how many died."""
    await WebhookEvent.filter(id__in=list(ids)).update(
        attempts=F("attempts") + 1, next_attempt_ms=next_attempt_ms, last_error=error[:500]
    )
    return await WebhookEvent.filter(id__in=list(ids), state=PENDING, attempts__gte=max_attempts).update(state=DEAD)


async def lease(webhook: str, owner: str, now_ms: int, until_ms: int) -> bool:
    """Take or renew the right to send ``webhook``'s events until ``until_ms``; False if another node has it."""
    taken = await WebhookLease.filter(Q(webhook=webhook) & (Q(owner=owner) | Q(expires_ms__lt=now_ms))).update(
        owner=owner, expires_ms=until_ms
    )
    if taken:
        return True
    row = await WebhookLease.get_or_none(webhook=webhook)
    if row is not None:
        # MySQL counts changed rows only: a renewal within the same millisecond reads 0.
        return row.owner == owner and row.expires_ms >= now_ms
    try:
        await WebhookLease.create(webhook=webhook, owner=owner, expires_ms=until_ms)
    except IntegrityError:
        return False
    return True


async def release_lease(webhook: str, owner: str) -> None:
    await WebhookLease.filter(webhook=webhook, owner=owner).delete()


# -- what operators read and do (the CLI and the server API) ---------------------------------


async def summary() -> list[dict[str, Any]]:
    """Per webhook: pending and dead events, and the oldest pending one's time."""
    rows = await (WebhookEvent.annotate(count=Count("id"), oldest=Min("created_ms"))
                  .group_by("webhook", "state").values("webhook", "state", "count", "oldest"))
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = out.setdefault(row["webhook"], {"webhook": row["webhook"], "pending": 0, "dead": 0,
                                                "oldest_pending_ms": None})
        entry[row["state"]] = int(row["count"])
        if row["state"] == PENDING:
            entry["oldest_pending_ms"] = int(row["oldest"])
    return [out[name] for name in sorted(out)]


async def dead_letters(webhook: str | None = None, limit: int = 100) -> list[WebhookEvent]:
    """Dead events, oldest first."""
    query = WebhookEvent.filter(state=DEAD)
    if webhook is not None:
        query = query.filter(webhook=webhook)
    return await query.order_by("id").limit(limit)


async def retry(webhook: str | None = None, ids: Sequence[int] | None = None) -> int:
    """Make dead events pending again, with their attempts reset; returns how many."""
    query = WebhookEvent.filter(state=DEAD)
    if webhook is not None:
        query = query.filter(webhook=webhook)
    if ids is not None:
        query = query.filter(id__in=list(ids))
    return await query.update(state=PENDING, attempts=0, next_attempt_ms=0, last_error=None)
