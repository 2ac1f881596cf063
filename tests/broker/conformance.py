"""The ``Broker`` contract as one test suite that every backend runs.

A backend's test module subclasses :class:`BrokerConformance` and provides a
``make_broker`` fixture: an async factory returning a started broker. Brokers
made by one factory must share their backend (for a distributed backend they
act as separate nodes); ``multi_node = False`` skips the tests that need that.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import pytest

from server.broker.base import HistoryOptions, OffsetConflict, Publication, StreamPosition


class RecordingHandler:
    """A BrokerHandler that records what it receives and lets tests wait for it."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.presence: list[tuple[str, str, dict]] = []
        self.control: list[dict] = []
        self.gaps: list[str] = []
        self.control_gaps: list[None] = []
        self._changed = asyncio.Event()

    def on_publication(self, pub: Publication) -> None:
        self.publications.append(pub)
        self._changed.set()

    def on_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        self.presence.append((kind, channel, info))
        self._changed.set()

    def on_control(self, message: dict[str, Any]) -> None:
        self.control.append(message)
        self._changed.set()

    def on_gap(self, channels: Sequence[str]) -> None:
        self.gaps.extend(channels)
        self._changed.set()

    def on_control_gap(self) -> None:
        self.control_gaps.append(None)
        self._changed.set()

    async def wait_for(self, attr: str, count: int, timeout: float = 5.0) -> list:
        async def wait() -> None:
            while len(getattr(self, attr)) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)
        return getattr(self, attr)


class BrokerConformance:
    multi_node = True

    @pytest.fixture
    async def node(self, make_broker):
        handler = RecordingHandler()
        broker = await make_broker(handler)
        return broker, handler

    async def test_offsets_start_at_one_and_increase_by_one(self, node, channel):
        broker, _ = node
        first = await broker.publish(channel, {"n": 1})
        second = await broker.publish(channel, {"n": 2})
        assert first.offset == 1 and second.offset == 2
        assert first.epoch == second.epoch

    async def test_publishes_started_in_order_get_offsets_in_that_order(self, node, channel):
        broker, handler = node
        await broker.subscribe(channel)
        # Tasks created in order, none awaited: what a client's pipelined publishes are.
        tasks = [asyncio.create_task(broker.publish(channel, i)) for i in range(50)]
        positions = await asyncio.gather(*tasks)
        assert [p.offset for p in positions] == list(range(1, 51))
        pubs = await handler.wait_for("publications", 50)
        assert [(p.offset, p.data) for p in pubs] == [(i + 1, i) for i in range(50)]

    async def test_position_of_new_channel_is_zero_and_stable(self, node, channel):
        broker, _ = node
        before = await broker.position(channel)
        assert before.offset == 0
        published = await broker.publish(channel, "x")
        assert published == StreamPosition(1, before.epoch)
        assert await broker.position(channel) == published

    async def test_delivers_only_subscribed_channels_in_order(self, node, channel):
        broker, handler = node
        await broker.subscribe(channel)
        await broker.publish(channel + "-other", "not subscribed")
        for i in range(20):
            await broker.publish(channel, i)
        pubs = await handler.wait_for("publications", 20)
        assert [p.data for p in pubs] == list(range(20))
        assert [p.offset for p in pubs] == list(range(1, 21))
        assert {p.channel for p in pubs} == {channel}

    async def test_publication_carries_info_and_epoch(self, node, channel):
        broker, handler = node
        await broker.subscribe(channel)
        position = await broker.publish(channel, {"a": [1, 2]}, info={"user": "alice"})
        [pub] = await handler.wait_for("publications", 1)
        assert pub.data == {"a": [1, 2]} and pub.info == {"user": "alice"}
        assert (pub.offset, pub.epoch) == (position.offset, position.epoch)

    async def test_unsubscribe_stops_delivery(self, node, channel):
        broker, handler = node
        await broker.subscribe(channel)
        await broker.publish(channel, 1)
        await handler.wait_for("publications", 1)
        await broker.unsubscribe(channel)
        await broker.publish(channel, 2)
        # A marker on a still-subscribed channel proves the earlier one was not delivered.
        await broker.subscribe(channel + "-marker")
        await broker.publish(channel + "-marker", "marker")
        pubs = await handler.wait_for("publications", 2)
        assert [p.data for p in pubs] == [1, "marker"]

    async def test_history_since_limit_reverse(self, node, channel):
        broker, _ = node
        for i in range(1, 11):
            top = await broker.publish(channel, i)
        pubs, position = await broker.history(channel)
        assert position == top
        assert [p.data for p in pubs] == list(range(1, 11))
        pubs, _ = await broker.history(channel, since=StreamPosition(7, top.epoch))
        assert [p.offset for p in pubs] == [8, 9, 10]
        pubs, _ = await broker.history(channel, limit=3)
        assert [p.offset for p in pubs] == [1, 2, 3]
        pubs, _ = await broker.history(channel, limit=3, reverse=True)
        assert [p.offset for p in pubs] == [10, 9, 8]

    async def test_history_since_another_epoch_returns_nothing(self, node, channel):
        broker, _ = node
        top = await broker.publish(channel, 1)
        pubs, position = await broker.history(channel, since=StreamPosition(0, "not-" + top.epoch))
        assert pubs == [] and position == top

    async def test_history_is_bounded_by_size(self, node, channel):
        broker, _ = node
        for i in range(1, 8):
            await broker.publish(channel, i, history=HistoryOptions(size=3, ttl=60))
        pubs, position = await broker.history(channel)
        assert [p.offset for p in pubs] == [5, 6, 7] and position.offset == 7

    async def test_presence_reaches_subscribed_nodes(self, node, channel):
        broker, handler = node
        await broker.subscribe(channel)
        await broker.publish_presence("join", channel, {"user": "alice"})
        await broker.publish_presence("leave", channel + "-unsubscribed", {"user": "bob"})
        await broker.publish_presence("leave", channel, {"user": "alice"})
        assert await handler.wait_for("presence", 2) == [
            ("join", channel, {"user": "alice"}),
            ("leave", channel, {"user": "alice"}),
        ]

    async def test_control_reaches_every_node(self, node, make_broker):
        broker, handler = node
        if self.multi_node:
            other = RecordingHandler()
            await make_broker(other)
        await broker.publish_control({"op": "disconnect", "user": "alice"})
        assert await handler.wait_for("control", 1) == [{"op": "disconnect", "user": "alice"}]
        if self.multi_node:
            assert await other.wait_for("control", 1) == [{"op": "disconnect", "user": "alice"}]

    async def test_two_nodes_share_offsets_and_deliveries(self, node, make_broker, channel):
        if not self.multi_node:
            pytest.skip("this backend lives in one process")
        a, handler_a = node
        handler_b = RecordingHandler()
        b = await make_broker(handler_b)
        await a.subscribe(channel)
        await b.subscribe(channel)
        offsets = await asyncio.gather(*(
            (a if i % 2 else b).publish(channel, i) for i in range(50)
        ))
        assert sorted(p.offset for p in offsets) == list(range(1, 51))
        for handler in (handler_a, handler_b):
            pubs = await handler.wait_for("publications", 50)
            assert [p.offset for p in pubs] == list(range(1, 51))

    async def test_healthy_after_start(self, node):
        broker, _ = node
        assert broker.healthy

    async def test_idempotent_publish_returns_the_first_position_and_delivers_once(self, node, channel):
        broker, handler = node
        await broker.subscribe(channel)
        first = await broker.publish(channel, "once", idempotency_key="k1")
        again = await broker.publish(channel, "once", idempotency_key="k1")
        other = await broker.publish(channel, "twice", idempotency_key="k2")
        assert (again.offset, again.epoch) == (first.offset, first.epoch) and again.already
        assert not first.already and other.offset == first.offset + 1
        pubs = await handler.wait_for("publications", 2)
        assert [p.data for p in pubs] == ["once", "twice"]
        # The key is per channel.
        elsewhere = await broker.publish(channel + "-b", "x", idempotency_key="k1")
        assert elsewhere.offset == 1 and not elsewhere.already

    async def test_compare_and_set_publish(self, node, channel):
        broker, _ = node
        assert (await broker.publish(channel, 1, expected_offset=1)).offset == 1
        assert (await broker.publish(channel, 2, expected_offset=2)).offset == 2
        done = await broker.publish(channel, "dup", expected_offset=2)
        assert done.already and done.offset == 2
        with pytest.raises(OffsetConflict) as exc:
            await broker.publish(channel, 4, expected_offset=4)
        assert exc.value.current.offset == 2
        pubs, _ = await broker.history(channel)
        assert [p.data for p in pubs] == [1, 2]

    async def test_a_restore_to_a_position_passed_in_its_epoch_changes_nothing(self, node, channel):
        """Two nodes restore one channel from the database; the one that read it earlier comes second."""
        broker, _ = node
        history = HistoryOptions(size=10, ttl=60)
        await broker.restore_position(channel, StreamPosition(10, "durable-epoch"))
        await broker.publish(channel, "eleventh", history=history, expected_offset=11)
        await broker.restore_position(channel, StreamPosition(10, "durable-epoch"))
        assert await broker.position(channel) == StreamPosition(11, "durable-epoch")
        pubs, _ = await broker.history(channel)
        assert [(p.offset, p.data) for p in pubs] == [(11, "eleventh")]
        # Forward in the epoch, or into another one, it still restores.
        await broker.restore_position(channel, StreamPosition(20, "durable-epoch"))
        assert await broker.position(channel) == StreamPosition(20, "durable-epoch")
        await broker.restore_position(channel, StreamPosition(5, "later-epoch"))
        assert await broker.position(channel) == StreamPosition(5, "later-epoch")

    async def test_restore_position_sets_offset_and_epoch(self, node, channel):
        broker, _ = node
        await broker.publish(channel, "before")
        await broker.restore_position(channel, StreamPosition(41, "durable-epoch"))
        assert await broker.position(channel) == StreamPosition(41, "durable-epoch")
        published = await broker.publish(channel, "after", expected_offset=42)
        assert (published.offset, published.epoch) == (42, "durable-epoch")
