"""The memory broker: the shared contract, plus its own expiry rules."""

from __future__ import annotations

import itertools

import pytest

from server.broker.base import HistoryOptions, StreamPosition
from server.broker.memory import MemoryBroker
from tests.broker.conformance import BrokerConformance, RecordingHandler

_ids = itertools.count()


@pytest.fixture
def channel() -> str:
    return f"test:ch{next(_ids)}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryBrokerConformance(BrokerConformance):
    multi_node = False

    @pytest.fixture
    async def make_broker(self):
        brokers = []

        async def make(handler):
            broker = MemoryBroker()
            await broker.start(handler)
            brokers.append(broker)
            return broker

        yield make
        for broker in brokers:
            await broker.close()


@pytest.fixture
async def clocked():
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    await broker.start(RecordingHandler())
    yield broker, clock
    await broker.close()


async def test_history_entries_expire_after_ttl(clocked, channel):
    broker, clock = clocked
    await broker.publish(channel, 1, history=HistoryOptions(size=10, ttl=30))
    clock.now += 20
    await broker.publish(channel, 2, history=HistoryOptions(size=10, ttl=30))
    clock.now += 15
    pubs, top = await broker.history(channel)
    assert [p.data for p in pubs] == [2] and top.offset == 2


async def test_stream_resets_with_new_epoch_after_meta_ttl(clocked, channel):
    broker, clock = clocked
    first = await broker.publish(channel, 1, history=HistoryOptions(size=10, ttl=30, meta_ttl=100))
    clock.now += 101
    after = await broker.publish(channel, 2, history=HistoryOptions(size=10, ttl=30, meta_ttl=100))
    assert after.offset == 1 and after.epoch != first.epoch
    pubs, _ = await broker.history(channel, since=StreamPosition(1, first.epoch))
    assert pubs == []
