"""``ChannelPositions``: what pub/sub delivers, checked against the streams of a real memory broker.

Publications are made in the broker (so its history holds them) and then fed
to the positions as pub/sub would deliver them, some of them lost on the way.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.broker.base import HistoryOptions, Publication
from server.broker.memory import MemoryBroker
from server.positions import ChannelPositions

HISTORY = HistoryOptions(size=10, ttl=60.0)
CHANNEL = "room:a"


class Node:
    """What the positions call: deliveries and lost channels recorded, reads from the broker."""

    def __init__(self, broker: MemoryBroker, position: Any = None) -> None:
        self.broker = broker
        self.delivered: list[int] = []
        self.lost: list[str] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.positions = ChannelPositions(
            lambda pub: self.delivered.append(pub.offset),
            lambda channel, since: broker.history(channel, since=since, limit=HISTORY.size),
            position or broker.position, self.lost.append, self.spawn,
        )

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        return task

    async def settle(self) -> None:
        while self.tasks:
            done = list(self.tasks)
            self.tasks.clear()
            await asyncio.gather(*done)


@pytest.fixture
async def node() -> Node:
    return Node(MemoryBroker())


async def publish(node: Node, count: int) -> list[Publication]:
    pubs = []
    for i in range(count):
        position = await node.broker.publish(CHANNEL, i, history=HISTORY)
        pubs.append(Publication(CHANNEL, position.offset, position.epoch, i))
    return pubs


async def test_contiguous_publications_go_straight_through_and_duplicates_are_dropped(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 3)
    for pub in pubs + pubs[1:]:
        node.positions.on_publication(pub)
    assert node.delivered == [1, 2, 3] and node.positions.fills == 0


async def test_a_gap_is_filled_from_the_stream_then_live_ones_follow_in_order(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 8)
    node.positions.on_publication(pubs[0])
    node.positions.on_publication(pubs[4])  # 2-4 lost: a fill starts
    node.positions.on_publication(pubs[5])  # live, waits for the fill
    assert node.delivered == [1]
    await node.settle()
    node.positions.on_publication(pubs[6])  # the fill read it already: a duplicate
    node.positions.on_publication(pubs[7])
    assert node.delivered == list(range(1, 9))
    assert node.positions.fills == 1 and node.positions.filled == 7 and node.lost == []


async def test_a_reported_gap_reads_what_was_missed_and_nothing_else(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 2)
    node.positions.on_publication(pubs[0])
    node.positions.on_gap([CHANNEL])
    await node.settle()
    assert node.delivered == [1, 2]
    node.positions.on_gap([CHANNEL])  # nothing missed this time
    await node.settle()
    assert node.delivered == [1, 2] and node.lost == []


async def test_a_gap_beyond_the_history_tells_the_subscribers_and_goes_on(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 15)  # the history keeps 6-15
    node.positions.on_publication(pubs[0])
    node.positions.on_publication(pubs[14])
    await node.settle()
    assert node.lost == [CHANNEL] and node.delivered == [1] and node.positions.resets == 1
    more = await publish(node, 1)
    node.positions.on_publication(more[0])  # from the top it read: 16 is next
    assert node.delivered == [1, 16]


async def test_a_new_epoch_tells_the_subscribers(node):
    node.positions.hold(CHANNEL)
    node.positions.seen(CHANNEL, await node.broker.position(CHANNEL))
    node.positions.on_publication(Publication(CHANNEL, 1, "another-epoch", "x"))
    await node.settle()
    # Told first (the node ends those subscriptions at once), then the new stream goes on.
    assert node.lost == [CHANNEL] and node.delivered == [1]


async def test_the_position_check_fills_a_lost_last_publication_on_its_second_look(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 2)
    node.positions.on_publication(pubs[0])  # 2 is lost, and nothing follows it
    await node.positions.check()
    assert node.delivered == [1]  # it may still be on its way
    await node.positions.check()
    await node.settle()
    assert node.delivered == [1, 2] and node.lost == []


async def test_a_subscriber_goes_live_only_once_its_position_was_delivered(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 3)
    node.positions.on_publication(pubs[0])
    live: list[str] = []
    node.positions.when_delivered(CHANNEL, await node.broker.position(CHANNEL), lambda: live.append("now"))
    node.positions.on_publication(pubs[1])
    assert live == []
    node.positions.on_publication(pubs[2])
    assert live == ["now"]


def lost_with_the_master(pubs: list[Publication], count: int) -> list[Publication]:
    """``count`` publications after ``pubs`` that pub/sub delivered and the stream no longer has.

    As when a Redis master dies before its replica received its last
    publications: the promoted replica numbers the next ones from its own top.
    """
    last = pubs[-1]
    return [Publication(CHANNEL, last.offset + 1 + i, last.epoch, f"lost {i}") for i in range(count)]


async def test_a_stream_gone_back_tells_the_subscribers_and_delivers_the_offsets_used_again(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 3)
    for pub in pubs + lost_with_the_master(pubs, 2):
        node.positions.on_publication(pub)
    assert node.delivered == [1, 2, 3, 4, 5]
    node.positions.on_gap([CHANNEL])  # the subscription moved to the promoted replica: its stream ends at 3
    await node.settle()
    assert node.lost == [CHANNEL] and node.positions.resets == 1
    for pub in await publish(node, 2):  # numbered 4 and 5 again by the replica
        node.positions.on_publication(pub)
    assert node.delivered == [1, 2, 3, 4, 5, 4, 5]  # the new ones are not taken for duplicates


async def test_the_position_check_finds_a_stream_gone_back(node):
    node.positions.hold(CHANNEL)
    pubs = await publish(node, 2)
    for pub in pubs + lost_with_the_master(pubs, 1):
        node.positions.on_publication(pub)
    await node.positions.check()  # no gap was reported: the check sees the stream behind
    await node.settle()
    assert node.lost == [CHANNEL]
    node.positions.on_publication((await publish(node, 1))[0])
    assert node.delivered == [1, 2, 3, 3]


async def test_what_is_delivered_while_the_check_reads_is_not_taken_for_a_stream_behind():
    broker, read, answer = MemoryBroker(), asyncio.Event(), asyncio.Event()

    async def slow_position(channel: str) -> Any:
        top = await broker.position(channel)
        read.set()
        await answer.wait()  # the reply is on its way while 2 is delivered
        return top

    node = Node(broker, slow_position)
    node.positions.hold(CHANNEL)
    node.positions.on_publication((await publish(node, 1))[0])
    checking = asyncio.create_task(node.positions.check())
    await read.wait()
    node.positions.on_publication((await publish(node, 1))[0])
    answer.set()
    await checking
    await node.settle()
    assert node.delivered == [1, 2] and node.positions.fills == 0 and node.lost == []
