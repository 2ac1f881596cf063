"""Server processes when Redis connections die, Redis goes away, or a server is killed."""

from __future__ import annotations

import asyncio
import signal
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from tests.redis_support import RedisProxy
from tests.cluster.conftest import PRESENCE_TTL, channel_name

pytestmark = pytest.mark.redis


async def kill_connections(redis: Redis, name: str) -> list[dict]:
    """CLIENT KILL every connection named ``name`` in CLIENT LIST; the ones killed."""
    ours = [c for c in await redis.client_list() if c["name"] == name]
    for c in ours:
        await redis.client_kill_filter(_id=c["id"])
    return ours


async def test_killed_redis_connections_lose_nothing_and_close_nobody(cluster, redis):
    a, b = await cluster.pair()
    channel = channel_name("kill")
    subscribers = [await a.client("sub-a"), await b.client("sub-b")]
    for subscriber in subscribers:
        await subscriber.result("subscribe", channel=channel)
    for subscriber, users in zip(subscribers, (["sub-a", "sub-b"], ["sub-b"])):
        for user in users:
            await subscriber.recv_push("join", channel=channel, info={"user": user})
    publisher = await b.client("pub")
    published: list[int] = []
    failed: list[dict] = []

    async def publish(count: int) -> None:
        for i in range(count):
            reply = await publisher.call("publish", channel=channel, data=i)
            if "result" in reply:
                published.append(reply["result"]["offset"])
            else:
                failed.append(reply["error"])
            await asyncio.sleep(0.005)

    task = asyncio.create_task(publish(300))
    first = [(await subscribers[0].recv_push("pub", channel=channel))["offset"] for _ in range(50)]

    killed = await kill_connections(redis, f"stagewire-{cluster.prefix}")
    # At least both servers' control channel connections (flag P: subscribed), and command connections.
    assert sum("P" in c["flags"] for c in killed) >= 2 and len(killed) > 2
    await asyncio.wait_for(task, 20)
    assert all(error["code"] == 112 for error in failed), failed  # a publish cut off is reported
    top = (await publisher.result("publish", channel=channel, data="after"))["offset"]
    assert set(published) <= set(range(1, top))

    for index, subscriber in enumerate(subscribers):
        received = first if index == 0 else []
        while len(received) < top:
            message = await subscriber.recv_push("pub", channel=channel)
            received.append(message["offset"])
        # Every publication made, once and in order, though pub/sub lost some: filled from the stream.
        assert received == list(range(1, top + 1))
        assert message["data"] == "after"
        await subscriber.assert_quiet()  # no disconnect, no unsubscribe push
    assert a.running and b.running


async def test_publish_while_redis_is_unreachable_fails_with_112(cluster, redis_url):
    parts = urlsplit(redis_url)
    proxy = RedisProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    await proxy.start()
    try:
        server = await cluster.start(env={
            "STAGEWIRE_BROKER__REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
            "STAGEWIRE_BROKER__SOCKET_TIMEOUT": "0.5",
        })
        channel = channel_name("outage")
        subscriber = await server.client("sub")
        await subscriber.result("subscribe", channel=channel)
        await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
        publisher = await server.client("pub")
        before = await publisher.result("publish", channel=channel, data="before")
        await subscriber.recv_push("pub", channel=channel, data="before")

        await proxy.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await publisher.assert_error(112, "publish", channel=channel, data="lost")
        assert error["temporary"] is True
        status, body = await server.api("POST", "/api/publish", {"channel": channel, "data": "lost"})
        assert status == 503 and body["error"]["code"] == 112
        assert loop.time() - started < 3.0

        await proxy.start()  # Redis is back on the same port, its streams intact
        for _ in range(200):
            status, _ = await server.api("GET", "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        # The refused publications were not made: no offset used, and the subscriber stays.
        after = await publisher.result("publish", channel=channel, data="after")
        assert after["offset"] == before["offset"] + 1
        push = await subscriber.recv_push("pub", channel=channel)
        assert (push["offset"], push["data"]) == (after["offset"], "after")
        await subscriber.assert_quiet()
    finally:
        await proxy.stop()


async def test_a_killed_servers_users_leave_within_the_presence_ttl(cluster):
    a, b = await cluster.pair()
    channel = channel_name("sigkill")
    watcher = await a.client("watcher")
    await watcher.result("subscribe", channel=channel)
    await (await a.client("carol")).result("subscribe", channel=channel)
    for user in ("carol", "bob", "alice"):
        await (await b.client(user)).result("subscribe", channel=channel)
    joins = {(await watcher.recv_push("join", channel=channel))["info"]["user"] for _ in range(4)}
    assert joins == {"watcher", "carol", "bob", "alice"}

    b.send_signal(signal.SIGKILL)
    await b.wait()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    left = {(await watcher.recv_push("leave", channel=channel, timeout=3 * PRESENCE_TTL))["info"]["user"]
            for _ in range(2)}
    # Entries were refreshed at most ttl/3 before the kill; a sweep runs every ttl/3.
    assert loop.time() - killed_at < PRESENCE_TTL + PRESENCE_TTL / 3 + 1.5
    assert left == {"alice", "bob"}
    users = await watcher.result("presence", channel=channel)
    assert users == {"users": [{"user": "carol", "connections": 1}, {"user": "watcher", "connections": 1}]}
    await watcher.assert_quiet()  # carol did not leave: she is still on A
