"""The Redis broker: the shared contract, plus Redis outages, TTLs and batching.

Every test runs twice, with classic and with sharded pub/sub, against the
Redis named by ``tests.services.require_redis()``. Each test has its own key
prefix and deletes its keys afterwards; brokers made by one ``make_broker``
share it, like the nodes of one cluster. Connections are killed by id, never by
type alone, so other users of the same Redis are left alone.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from typing import Any, Callable

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from server.broker.base import IDEMPOTENCY_TTL, BrokerUnavailable, HistoryOptions, StreamPosition
from server.broker.redis_client import RedisClient
from server.broker.redis import RedisBroker
from server.config import BrokerSettings
from tests.broker.conformance import BrokerConformance, RecordingHandler
from tests.private_redis import private_redis  # noqa: F401
from tests.redis_support import RedisProxy, admin, prefix, proxy, redis_url, socket_nobody_listens_on  # noqa: F401

pytestmark = pytest.mark.redis

# Short timeouts so that outages are noticed, and recovered from, quickly.
FAST = dict(socket_timeout=0.5, ping_interval=0.3, reconnect_min_delay=0.02, reconnect_max_delay=0.2)
_ids = itertools.count()


@pytest.fixture
def channel() -> str:
    return f"test:ch{next(_ids)}"


@pytest.fixture(params=[False, True], ids=["pubsub", "sharded"])
def sharded(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
async def make_broker(redis_url: str, prefix: str, sharded: bool):
    brokers: list[RedisBroker] = []
    clients: list[RedisClient] = []

    async def make(handler: RecordingHandler, **overrides: Any) -> RedisBroker:
        options = {"redis_url": redis_url, "prefix": prefix, "sharded_pubsub": sharded, **FAST}
        client = RedisClient(BrokerSettings(backend="redis", **{**options, **overrides}))
        clients.append(client)
        broker = RedisBroker(client)
        brokers.append(broker)
        await broker.start(handler)
        return broker

    yield make
    await asyncio.gather(*(broker.close() for broker in brokers))
    await asyncio.gather(*(client.close() for client in clients))


async def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``condition`` (sync or async) until it is true; fail after ``timeout``."""
    async def poll() -> None:
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


class TestRedisBrokerConformance(BrokerConformance):
    multi_node = True


# -- pipelining ----------------------------------------------------------------------


async def test_what_is_issued_in_one_loop_iteration_is_one_round_trip(make_broker, channel):
    broker = await make_broker(RecordingHandler())
    await broker.publish(channel, "warm-up")  # connects the pipeline
    before = broker.round_trips
    # Publishes, reads and presence of many channels, from many tasks at once.
    work = [broker.publish(f"{channel}-{i % 5}", i) for i in range(40)]
    work += [broker.position(f"{channel}-{i}") for i in range(5)]
    work.append(broker.publish_presence("join", channel, {"user": "u"}))
    results = await asyncio.gather(*work)
    assert broker.round_trips == before + 1
    assert [p.offset for p in results[:40:5]] == list(range(1, 9))  # channel -0 in order
    assert results[40].offset == 8


async def test_a_lost_command_connection_fails_what_waits_then_reconnects(make_broker, redis_url, channel):
    broker = await make_broker(RecordingHandler())
    await broker.publish(channel, 1)
    async with admin(redis_url) as client:
        for c in await client.client_list():
            if c["name"] == broker.client_name and "P" not in c["flags"]:
                await client.client_kill_filter(_id=c["id"])
    # An idle connection found closed is replaced before the batch is sent.
    assert (await broker.publish(channel, 2)).offset == 2


async def test_scripts_are_loaded_again_after_redis_lost_them(make_broker, private_redis, channel):
    broker = await make_broker(RecordingHandler(), redis_url=private_redis.url)
    await broker.publish(channel, 1)
    async with admin(private_redis.url) as client:
        await client.script_flush()  # what a restart does to the script cache
    positions = await asyncio.gather(*(broker.publish(channel, i) for i in range(2, 12)))
    assert [p.offset for p in positions] == list(range(2, 12))


# -- Redis going away ---------------------------------------------------------------


async def test_killed_connections_reconnect_resubscribe_and_report_gap(make_broker, redis_url, channel):
    handler = RecordingHandler()
    broker = await make_broker(handler)
    held = [f"{channel}-{i}" for i in range(8)]  # spread over every pub/sub connection
    await asyncio.gather(*(broker.subscribe(c) for c in held + [channel + "-left"]))
    await broker.unsubscribe(channel + "-left")
    for c in held:
        await broker.publish(c, "before")
    await handler.wait_for("publications", len(held))

    async with admin(redis_url) as client:
        ours = [c for c in await client.client_list() if c["name"] == broker.client_name]
        pubsub = [c for c in ours if "P" in c["flags"]]
        assert pubsub and len(pubsub) < len(ours)
        for c in pubsub:  # CLIENT KILL TYPE pubsub, for this broker's connections only
            await client.client_kill_filter(_id=c["id"], _type="pubsub")
        for c in ours:  # then the command connections too
            if c not in pubsub:
                await client.client_kill_filter(_id=c["id"])

    gaps = await handler.wait_for("gaps", len(held))
    assert sorted(gaps) == sorted(held)  # held ones only, each once, not the one it left
    assert await handler.wait_for("control_gaps", 1) == [None]  # control messages may be lost too
    await wait_until(lambda: broker.healthy)
    for c in held:
        assert (await broker.publish(c, "after")).offset == 2
    pubs = await handler.wait_for("publications", 2 * len(held))
    assert sorted((p.channel, p.data) for p in pubs[len(held):]) == sorted((c, "after") for c in held)
    await broker.publish_control({"op": "ping"})  # the control channel is back as well
    assert await handler.wait_for("control", 1) == [{"op": "ping"}]


async def test_outage_fails_fast_then_recovers_with_gap(make_broker, proxy, channel):
    handler = RecordingHandler()
    broker = await make_broker(handler, redis_url=f"redis://127.0.0.1:{proxy.port}/0")
    await broker.subscribe(channel)
    first = await broker.publish(channel, 1)
    await handler.wait_for("publications", 1)
    loop = asyncio.get_running_loop()

    proxy.stall()  # Redis stops answering: publish must time out, not hang
    started = loop.time()
    with pytest.raises(BrokerUnavailable):
        await broker.publish(channel, "lost")
    assert loop.time() - started < 2.0
    await wait_until(lambda: not broker.healthy)  # noticed by the pub/sub heartbeat

    await proxy.stop()  # Redis is gone: every operation fails at once
    started = loop.time()
    for call in (broker.publish(channel, "lost"), broker.position(channel), broker.history(channel),
                 broker.publish_presence("join", channel, {}), broker.publish_control({"op": "x"}),
                 broker.subscribe(channel + "-new")):
        with pytest.raises(BrokerUnavailable):
            await call
    assert loop.time() - started < 2.0
    assert handler.gaps == []

    await proxy.start()  # same port: Redis is back
    assert await handler.wait_for("gaps", 1) == [channel]
    assert await handler.wait_for("control_gaps", 1) == [None]
    await wait_until(lambda: broker.healthy)
    again = await broker.publish(channel, 2)
    assert (again.offset, again.epoch) == (first.offset + 1, first.epoch)
    pubs = await handler.wait_for("publications", 2)
    assert [p.data for p in pubs] == [1, 2]


async def test_unreachable_redis_at_start_fails_fast(make_broker):
    with socket_nobody_listens_on() as port:
        broker = await make_broker(RecordingHandler(), redis_url=f"redis://127.0.0.1:{port}/0")
        assert not broker.healthy
        for call in (broker.publish("test:x", 1), broker.position("test:x"), broker.subscribe("test:x")):
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(call, 2.0)


async def test_keys_have_ttls(make_broker, redis_url, prefix, channel):
    broker = await make_broker(RecordingHandler())
    history = HistoryOptions(size=10, ttl=30, meta_ttl=100)
    await broker.publish(channel, 1, history=history)
    await broker.publish(channel, 2, history=history, idempotency_key="k")
    await broker.publish(channel + "-nohist", 1, history=HistoryOptions(size=0, ttl=30, meta_ttl=100))
    await broker.position(channel + "-new")
    async with admin(redis_url) as client:
        assert 0 < await client.pttl(f"{prefix}.idem.{{{channel}}}.k") <= IDEMPOTENCY_TTL * 1000
        assert 0 < await client.pttl(f"{prefix}.meta.{{{channel}}}") <= 100_000
        assert 0 < await client.pttl(f"{prefix}.stream.{{{channel}}}") <= 30_000
        assert 0 < await client.pttl(f"{prefix}.meta.{{{channel}-nohist}}") <= 100_000
        assert not await client.exists(f"{prefix}.stream.{{{channel}-nohist}}")
        assert 0 < await client.pttl(f"{prefix}.meta.{{{channel}-new}}")
    pubs, top = await broker.history(channel + "-nohist")
    assert pubs == [] and top.offset == 1


async def test_expired_position_starts_a_new_epoch(make_broker, redis_url, prefix, channel):
    broker = await make_broker(RecordingHandler())
    short = HistoryOptions(size=10, ttl=0.05, meta_ttl=0.1)
    first = await broker.publish(channel, 1, history=short)
    async with admin(redis_url) as client:  # reading it makes Redis expire it
        await wait_until(lambda: _gone(client, f"{prefix}.meta.{{{channel}}}"))
    after = await broker.publish(channel, 2, history=short)
    assert after.offset == 1 and after.epoch != first.epoch
    pubs, top = await broker.history(channel, since=StreamPosition(0, first.epoch))
    assert pubs == [] and top == after


async def _gone(client: Redis, key: str) -> bool:
    return not await client.exists(key)


async def test_lost_position_drops_the_old_history(make_broker, redis_url, prefix, channel):
    # E.g. the meta key was evicted while the stream survived: the old entries
    # must not reappear under the new epoch.
    broker = await make_broker(RecordingHandler())
    old = await broker.publish(channel, "old")
    async with admin(redis_url) as client:
        await client.delete(f"{prefix}.meta.{{{channel}}}")
    position = await broker.position(channel)
    assert position.offset == 0 and position.epoch != old.epoch
    new = await broker.publish(channel, "new")
    pubs, _ = await broker.history(channel)
    assert [(p.offset, p.epoch, p.data) for p in pubs] == [(1, new.epoch, "new")]


# -- offsets and batching -------------------------------------------------------------------


async def test_offsets_are_atomic_across_three_nodes(make_broker, channel):
    # 500 publishes queue per node for 50 connections: on a loaded machine that
    # wait can pass the default 1.5 s timeout, which is not what this test is about.
    nodes = [(await make_broker(handler, socket_timeout=15.0), handler)
             for handler in (RecordingHandler() for _ in range(3))]
    for broker, _ in nodes:
        await broker.subscribe(channel)
    count = 1500
    positions = await asyncio.gather(*(nodes[i % 3][0].publish(channel, i) for i in range(count)))
    assert sorted(p.offset for p in positions) == list(range(1, count + 1))
    assert len({p.epoch for p in positions}) == 1
    for _, handler in nodes:
        pubs = await handler.wait_for("publications", count)
        assert [p.offset for p in pubs] == list(range(1, count + 1))


async def test_subscribes_made_together_share_one_command_per_connection(make_broker, prefix, monkeypatch):
    commands: list[tuple] = []
    send_command = AbstractConnection.send_command

    async def spy(self, *args, **kwargs):
        if args and args[0] in ("SUBSCRIBE", "SSUBSCRIBE"):
            commands.append(args[1:])
        return await send_command(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_command", spy)
    handler = RecordingHandler()
    broker = await make_broker(handler, pubsub_shards=4)
    channels = [f"batch:{i}" for i in range(200)]
    commands.clear()
    await asyncio.gather(*(broker.subscribe(c) for c in channels))
    assert 1 < len(commands) <= 4
    assert sorted(name for command in commands for name in command) == sorted(
        f"{prefix}.pub.{{{c}}}".encode() for c in channels)
    for c in channels[:10]:
        await broker.publish(c, c)
    pubs = await handler.wait_for("publications", 10)
    assert sorted(p.data for p in pubs) == sorted(channels[:10])
