"""Durable channels: store first (in groups), then deliver.

A publication to a ``persist = true`` namespace is acknowledged only after its
row is committed. Publications wait in one queue; a single writer task takes
everything waiting (up to ``max_batch``) and stores it with one bulk insert in
one transaction: group commit, one round trip for many publications.

The database numbers the rows (``seq``, unique per channel), and the broker
then publishes each with ``expected_offset`` so the offsets subscribers see are
the stored ones. If another node stored the same numbers first, the unique
constraint refuses our batch and we renumber from the database and retry. If
the broker is behind the database (its state was lost, or a node died between
commit and delivery), the missing rows are delivered from the database first;
if it lost the channel's epoch, the database's epoch is restored into it.

A commit that fails is reported to every publisher of the group, and nothing
of it is delivered. Once a commit succeeded, its publications are published:
if the broker cannot take them now, the publishers get their offsets flagged
``delayed``, and a redelivery task hands the rows to the broker (at their
stored offsets) as soon as it is back. ``UNAVAILABLE`` means "not stored".

:class:`DurableLog` is a :class:`~server.broker.base.Stream`, like a broker:
``publish``, ``position`` and ``history`` take the same arguments, so the node
asks a channel's stream without knowing whether it is durable. ``history``
answers from the broker's window when that holds the exact range asked for,
and from the database otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from tortoise.exceptions import IntegrityError

from models.publication import PublicationRecord
from models.transactions import CommitInDoubt, transaction
from server.broker.base import (
    IDEMPOTENCY_TTL,
    Broker,
    BrokerUnavailable,
    HistoryOptions,
    OffsetConflict,
    Publication,
    StreamPosition,
)
from server.errors import CommandError, ErrorCode

log = logging.getLogger("stagewire.durable")

MAX_ATTEMPTS = 5
# Redelivery of committed rows the broker could not take: first retry, and the cap of the backoff.
REDELIVER_MIN_DELAY = 0.2
REDELIVER_MAX_DELAY = 5.0
# A commit cut off before the database answered is read back for this long before it counts as lost.
IN_DOUBT_BUDGET = 5.0


@dataclass(slots=True)
class _Pending:
    channel: str
    data: Any
    info: dict[str, Any] | None
    history: HistoryOptions
    idempotency_key: str | None
    future: asyncio.Future[StreamPosition] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class DurableLog:
    """The group-commit writer and reader of durable publications."""

    def __init__(self, broker: Broker, *, max_batch: int = 1000) -> None:
        self._broker = broker
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._positions: dict[str, StreamPosition] = {}
        # Committed but not in the broker yet: channel → (its newest stored position, history options).
        self._undelivered: dict[str, tuple[StreamPosition, HistoryOptions]] = {}
        self._redeliver_wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redeliver_task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions, for tests and metrics

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="durable-writer")
        self._redeliver_task = asyncio.create_task(self._redeliver_forever(), name="durable-redeliver")

    @property
    def undelivered(self) -> set[str]:
        """Channels with committed publications the broker has not taken yet."""
        return set(self._undelivered)

    async def close(self) -> None:
        for task in (self._task, self._redeliver_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(CommandError(ErrorCode.UNAVAILABLE, "server shutting down"))

    # -- writing ------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        info: dict[str, Any] | None = None,
        history: HistoryOptions = HistoryOptions(),
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Store and then deliver one publication; returns its position once committed."""
        if idempotency_key is not None:
            for pending in self._queue:  # a retry racing its own first attempt
                if pending.channel == channel and pending.idempotency_key == idempotency_key:
                    return await asyncio.shield(pending.future)
        # Queued before the first suspension (the key is checked by the writer),
        # so publishes started in order are numbered in order (see Stream).
        pending = _Pending(channel, data, info, history, idempotency_key)
        self._queue.append(pending)
        self._wakeup.set()
        return await asyncio.shield(pending.future)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    await self._commit_and_deliver(batch)
                except asyncio.CancelledError:
                    self._fail(batch, CommandError(ErrorCode.UNAVAILABLE, "server shutting down"))
                    raise
                except Exception:
                    log.exception("durable batch failed")
                    self._fail(batch, CommandError(ErrorCode.INTERNAL, "internal error"))

    async def _commit_and_deliver(self, batch: list[_Pending]) -> None:
        for attempt in range(MAX_ATTEMPTS):
            # Again after a refusal: it may have been another node storing one of our keys.
            batch = await self._not_stored_yet(batch, release_expired=attempt > 0)
            if not batch:
                return
            try:
                rows = await self._number(batch)
                await _insert(rows)
                break
            except IntegrityError:
                # Another node numbered the same offsets first, or stored one of
                # the idempotency keys: renumber from the database (and look again).
                for pending in batch:
                    self._positions.pop(pending.channel, None)
                await asyncio.sleep(0.005 * (attempt + 1))
            except BrokerUnavailable as exc:
                self._fail(batch, exc)
                return
            except Exception as exc:
                if isinstance(exc, CommitInDoubt) and await _stored_after_all(rows):
                    break  # the COMMIT went through, its answer did not
                log.warning("storing %d durable publications failed", len(batch), exc_info=True)
                for pending in batch:
                    self._positions.pop(pending.channel, None)
                self._fail(batch, CommandError(ErrorCode.UNAVAILABLE, "could not store the publication"))
                return
        else:
            self._fail(batch, CommandError(ErrorCode.UNAVAILABLE, "too much contention on the channel"))
            return
        self.commits += 1
        for pending, row in zip(batch, rows):
            position = StreamPosition(row.seq, row.epoch)
            self._positions[pending.channel] = position
        broker_down = False
        for pending, row in zip(batch, rows):
            stored = StreamPosition(row.seq, row.epoch)
            if not broker_down and row.channel not in self._undelivered:
                try:
                    position = await self._deliver(pending, row)
                except BrokerUnavailable as exc:
                    # The rest of the batch would wait for the same timeout: it all waits for redelivery.
                    log.warning("durable publications stored, broker unavailable: %s", exc)
                    broker_down = True
                else:
                    if not pending.future.done():
                        pending.future.set_result(position)
                    continue
            # Committed, so published: the broker takes it when it is back, in order.
            self._undelivered[row.channel] = (stored, pending.history)
            self._redeliver_wakeup.set()
            if not pending.future.done():
                pending.future.set_result(StreamPosition(stored.offset, stored.epoch, delayed=True))

    async def _number(self, batch: list[_Pending]) -> list[_Row]:
        rows = []
        next_position: dict[str, StreamPosition] = {}
        created_at = datetime.now(timezone.utc)
        for pending in batch:
            # Our own last number: a stale one is refused by the unique constraint, and renumbered.
            position = next_position.get(pending.channel) or await self._load_position(pending.channel)
            position = StreamPosition(position.offset + 1, position.epoch)
            next_position[pending.channel] = position
            rows.append(
                _Row(
                    channel=pending.channel,
                    epoch=position.epoch,
                    seq=position.offset,
                    data=orjson.dumps(pending.data).decode(),
                    author=(pending.info or {}).get("user"),
                    idempotency_key=pending.idempotency_key,
                    created_at=created_at,
                )
            )
        return rows

    async def _deliver(self, pending: _Pending, row: _Row) -> StreamPosition:
        for _ in range(MAX_ATTEMPTS):
            try:
                return await self._broker.publish(
                    row.channel, pending.data, info=pending.info, history=pending.history,
                    expected_offset=row.seq,
                )
            except OffsetConflict as exc:
                await self._catch_up(row.channel, exc.current, StreamPosition(row.seq - 1, row.epoch), pending.history)
        raise BrokerUnavailable("could not deliver in order")

    async def _catch_up(self, channel: str, current: StreamPosition, target: StreamPosition, history: HistoryOptions) -> None:
        """Bring the broker from ``current`` to ``target`` from the database."""
        if current.epoch != target.epoch:
            await self._broker.restore_position(channel, target)
            return
        missing = await self.read(channel, StreamPosition(current.offset, target.epoch), target.offset - current.offset)
        for pub in missing:
            await self._broker.publish(channel, pub.data, info=pub.info, history=history, expected_offset=pub.offset)
        if not missing or missing[-1].offset < target.offset:
            await self._broker.restore_position(channel, target)

    async def _redeliver_forever(self) -> None:
        """Hand committed rows to the broker once it is back, oldest first, at their stored offsets."""
        delay = REDELIVER_MIN_DELAY
        while True:
            await self._redeliver_wakeup.wait()
            await asyncio.sleep(delay)
            for channel, (target, history) in list(self._undelivered.items()):
                try:
                    current = await self._broker.position(channel)
                    if current.epoch == target.epoch and current.offset >= target.offset:
                        pass  # another node (or a later publish) delivered them
                    else:
                        await self._catch_up(channel, current, target, history)
                except BrokerUnavailable:
                    delay = min(REDELIVER_MAX_DELAY, delay * 2)
                    break
                except Exception:
                    log.exception("redelivering durable publications of %s failed", channel)
                    delay = min(REDELIVER_MAX_DELAY, delay * 2)
                    break
                if self._undelivered.get(channel, (None,))[0] == target:
                    del self._undelivered[channel]
            else:
                delay = REDELIVER_MIN_DELAY
            if not self._undelivered:
                self._redeliver_wakeup.clear()

    def _fail(self, batch: list[_Pending], error: Exception) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    # -- reading ------------------------------------------------------------------

    async def position(self, channel: str) -> StreamPosition:
        """The channel's newest position, other nodes' publications included."""
        if channel not in self._positions:
            return await self._load_position(channel)
        return await self._newest(channel, await self._broker.position(channel))

    async def _newest(self, channel: str, seen: StreamPosition) -> StreamPosition:
        """The newer of ours and ``seen``, the broker's: another node may have published since our last commit.

        Ours is ahead while our own rows are on their way to the broker (in flight
        or delayed); they reach the subscribers as live publications after it.
        """
        cached = self._positions.get(channel)
        if cached is None or seen.epoch != cached.epoch:
            self._positions.pop(channel, None)
            return await self._load_position(channel)
        if seen.offset > cached.offset:
            cached = self._positions[channel] = StreamPosition(seen.offset, seen.epoch)
        return cached

    async def _load_position(self, channel: str) -> StreamPosition:
        """The channel's position as stored; the broker is brought in line with it."""
        cached = self._positions.get(channel)
        if cached is not None:
            return cached
        last = await PublicationRecord.filter(channel=channel).order_by("-seq").first()
        try:
            broker_position = await self._broker.position(channel)
        except BrokerUnavailable:
            if last is None:
                raise  # a new channel's epoch comes from the broker
            # Numbering needs only the database; the broker is brought in line once it is back.
            return StreamPosition(last.seq, last.epoch)
        if last is None:
            position = broker_position
        else:
            position = StreamPosition(last.seq, last.epoch)
            if broker_position.epoch != position.epoch:
                # The broker lost this channel (a restart, an expiry): the database is the truth.
                await self._broker.restore_position(channel, position)
            elif broker_position.offset >= position.offset:
                position = broker_position
            # Else the broker is behind in the same epoch: rows committed and not delivered yet
            # (by their node's redelivery, or by the next publish's catch-up). Moving the broker's
            # offset past them here would skip them for every live subscriber.
        self._positions[channel] = position
        return position

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        """The exact run of stored offsets asked for, and the channel's position.

        The newest ``limit`` publications (``reverse``), or the ``limit`` ones
        right after ``since``; none if ``since`` names another epoch.
        """
        pubs, seen = await self._broker.history(channel, since=since, limit=limit, reverse=reverse)
        top = await self._newest(channel, seen)
        start = since if since is not None else StreamPosition(0, top.epoch)
        if start.epoch != top.epoch:
            return [], top
        wanted = min(limit, max(0, top.offset - start.offset))
        expected = (
            list(range(top.offset, top.offset - wanted, -1))
            if reverse
            else list(range(start.offset + 1, start.offset + wanted + 1))
        )
        if [p.offset for p in pubs[:wanted]] != expected:
            # The broker keeps a window; the database keeps everything.
            pubs = await self.read(channel, start, wanted, reverse=reverse)
        return pubs[:wanted], top

    async def read(self, channel: str, since: StreamPosition, limit: int, reverse: bool = False) -> list[Publication]:
        """Stored publications after ``since`` (in ``since.epoch``), oldest first unless ``reverse``."""
        query = PublicationRecord.filter(channel=channel, epoch=since.epoch, seq__gt=since.offset)
        query = query.order_by("-seq" if reverse else "seq").limit(limit)
        return [_publication(row) for row in await query]

    async def _not_stored_yet(self, batch: list[_Pending], *, release_expired: bool = False) -> list[_Pending]:
        """The batch without the retries of publications already stored (they get the first position).

        The database holds a key once per channel (a unique constraint), so a
        key stored by another node in the meantime refuses our insert; this
        then answers its publisher with that node's position. With
        ``release_expired``, a key older than :data:`IDEMPOTENCY_TTL` is taken
        off its row, so that it can name a new publication.
        """
        fresh = []
        for pending in batch:
            if pending.idempotency_key is not None:
                earlier = await self._stored_with_key(pending.channel, pending.idempotency_key)
                if earlier is not None:
                    if not pending.future.done():
                        pending.future.set_result(earlier)
                    continue
                if release_expired:
                    await PublicationRecord.filter(
                        channel=pending.channel, idempotency_key=pending.idempotency_key,
                        created_at__lt=_idempotency_cutoff(),
                    ).update(idempotency_key=None)
            fresh.append(pending)
        return fresh

    async def _stored_with_key(self, channel: str, key: str) -> StreamPosition | None:
        row = await PublicationRecord.filter(
            channel=channel, idempotency_key=key, created_at__gte=_idempotency_cutoff()
        ).first()
        if row is None:
            return None
        return StreamPosition(row.seq, row.epoch, already=True)


@dataclass(frozen=True, slots=True)
class _Row:
    channel: str
    epoch: str
    seq: int
    data: str
    author: str | None
    idempotency_key: str | None
    created_at: datetime


async def _insert(rows: list[_Row]) -> None:
    """One multi-row insert in one transaction.

    Rows go straight to the driver (``execute_many`` with Tortoise's own INSERT
    statement and field conversions): building a model instance per row would
    cost more than the database does.
    """
    meta = PublicationRecord._meta
    async with transaction() as connection:
        executor = connection.executor_class(model=PublicationRecord, db=connection)
        fields = [meta.fields_map[meta.fields_db_projection_reverse[c]] for c in executor.regular_columns]
        values = [
            [field.to_db_value(getattr(row, field.model_field_name), PublicationRecord) for field in fields]
            for row in rows
        ]
        await connection.execute_many(executor.insert_query, values)


async def _stored_after_all(rows: list[_Row]) -> bool:
    """Whether a transaction whose ``COMMIT`` went unanswered was stored (it is all or nothing).

    Read back once the database answers again, within :data:`IN_DOUBT_BUDGET`. The
    same offset may have been taken by another node since, so the row must be ours.
    """
    first = rows[0]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IN_DOUBT_BUDGET
    delay = 0.05
    while True:
        try:
            async with asyncio.timeout(max(0.05, deadline - loop.time())):
                found = await PublicationRecord.get_or_none(channel=first.channel, epoch=first.epoch, seq=first.seq)
        except Exception:
            if loop.time() + delay > deadline:
                log.warning("could not read back an unanswered commit of %s", first.channel)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        return found is not None and found.data == first.data and found.created_at == first.created_at


def _idempotency_cutoff() -> datetime:
    """Rows stored before this no longer answer for their idempotency key."""
    return datetime.now(timezone.utc) - timedelta(seconds=IDEMPOTENCY_TTL)


def _publication(row: PublicationRecord) -> Publication:
    info = {"user": row.author} if row.author is not None else None
    return Publication(row.channel, row.seq, row.epoch, orjson.loads(row.data), info)

