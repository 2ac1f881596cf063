"""Two server processes over one Redis, a pusher-js client on each: members, events, client events.

Uses the ``cluster`` fixture of tests/cluster (real ``python -m server``
processes sharing a Redis prefix, a database and the secrets).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pusher
import pytest

from tests.cluster.conftest import cluster, redis, redis_url  # noqa: F401
from tests.hooks.receiver import Receiver
from tests.pusher.helpers import APP_ID, KEY, SECRET, validator
from tests.pusher.nodedriver import NodeDriver

pytestmark = pytest.mark.redis

ENV = {"STAGEWIRE_PUSHER__APPS": f'[{{id = "{APP_ID}", key = "{KEY}", secret = "{SECRET}", client_events = true}}]'}


def library(server) -> pusher.Pusher:
    parts = urlsplit(server.url)
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host=parts.hostname, port=parts.port, ssl=False)


async def test_presence_and_events_across_two_servers(cluster, redis):  # noqa: F811
    a, b = await cluster.pair(env=ENV)
    members = {"on-a": {"id": "ua", "user_info": {"node": "a"}}, "on-b": {"id": "ub", "user_info": {"node": "b"}}}
    lib = library(a)

    async def authorize(request: dict[str, Any]) -> dict[str, Any]:
        m = members[request["client"]]
        return await asyncio.to_thread(lib.authenticate, request["channel"], request["socket_id"],
                                       {"user_id": m["id"], "user_info": m["user_info"]})

    node = await NodeDriver.start(authorize)
    try:
        await node.connect("on-a", a, KEY)
        await node.connect("on-b", b, KEY)
        await node.call("subscribe", client="on-a", channel="presence-x")
        await node.expect(type="event", client="on-a", event="pusher:subscription_succeeded")
        await node.call("subscribe", client="on-b", channel="presence-x")
        ok = await node.expect(type="event", client="on-b", event="pusher:subscription_succeeded")
        assert ok["data"]["members"] == ["ua", "ub"]  # a's member, seen from b
        added = await node.expect(type="event", client="on-a", event="pusher:member_added")
        assert added["data"] == {"id": "ub", "info": {"node": "b"}}
        for server in (a, b):
            assert await asyncio.to_thread(library(server).users_info, "presence-x") == {
                "users": [{"id": "ua"}, {"id": "ub"}]}
            assert await asyncio.to_thread(library(server).channel_info, "presence-x",
                                           ["user_count", "subscription_count"]) == {
                "occupied": True, "user_count": 2, "subscription_count": 2}

        # An HTTP API event on one server reaches the client of the other; a client event crosses too.
        await asyncio.to_thread(library(b).trigger, "presence-x", "from-b", {"n": 1})
        assert (await node.expect(type="event", client="on-a", event="from-b"))["data"] == {"n": 1}
        assert (await node.expect(type="event", client="on-b", event="from-b"))["data"] == {"n": 1}
        await node.call("trigger", client="on-a", channel="presence-x", event="client-ping", data={"hi": "b"})
        assert (await node.expect(type="event", client="on-b", event="client-ping"))["data"] == {"hi": "b"}

        # Per-channel Redis subscriptions: each server holds the channel's own pub/sub channel.
        holders = await redis.pubsub_numsub(f"{cluster.prefix}.pub.{{pusher:presence-x}}")
        assert holders[0][1] == 2

        await node.call("disconnect", client="on-b")
        removed = await node.expect(type="event", client="on-a", event="pusher:member_removed")
        assert removed["data"]["id"] == "ub"
        assert await asyncio.to_thread(library(a).users_info, "presence-x") == {"users": [{"id": "ua"}]}
    finally:
        await node.close()


async def test_webhooks_from_two_servers_carry_each_transition_once(cluster, redis):  # noqa: F811
    """The same user on both servers: one channel_occupied, one member_added, one member_removed, one vacated.

    A webhook's events arrive in the order they were stored, and each server
    stores its own in order, so once a marker subscribed on each server has
    arrived, every event either server stored before it has arrived too.
    """
    receiver = await Receiver(SECRET, "/pusher", verify=validator()).start()
    hooked = (f'[{{id = "{APP_ID}", key = "{KEY}", secret = "{SECRET}", webhooks = [{{url = "{receiver.url}", '
              'event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]}]}]')
    env = {"STAGEWIRE_PUSHER__APPS": hooked, "STAGEWIRE_HOOKS__POLL_INTERVAL": "0.2",
           "STAGEWIRE_HOOKS__RETRY_MIN_DELAY": "0.05", "STAGEWIRE_HOOKS__RETRY_MAX_DELAY": "0.5"}
    a, b = await cluster.pair(env=env)
    users = {"u1-a": "u1", "u1-b": "u1", "u2-b": "u2"}
    lib = library(a)

    async def authorize(request: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(lib.authenticate, request["channel"], request["socket_id"],
                                       {"user_id": users[request["client"]]})

    node = await NodeDriver.start(authorize)

    async def markers(label: str) -> None:
        for name, server in ((f"{label}-a", a), (f"{label}-b", b)):
            await node.connect(name, server, KEY)
            await node.call("subscribe", client=name, channel=name)
            await node.expect(type="event", client=name, event="pusher:subscription_succeeded")
        for name in (f"{label}-a", f"{label}-b"):
            await receiver.wait_names("channel_occupied", channel=name)

    def seen() -> list[tuple[str, str | None]]:
        return [(e["name"], e.get("user_id")) for e in receiver.events if e["channel"] == "presence-hooks"]

    try:
        for client, server in (("u1-a", a), ("u1-b", b), ("u2-b", b)):
            await node.connect(client, server, KEY)
            await node.call("subscribe", client=client, channel="presence-hooks")
            await node.expect(type="event", client=client, event="pusher:subscription_succeeded")
        await markers("m1")
        assert seen() == [("channel_occupied", None), ("member_added", "u1"), ("member_added", "u2")]

        await node.call("disconnect", client="u1-a")  # u1 is still on b
        await node.call("disconnect", client="u2-b")
        await receiver.wait_names("member_removed", user_id="u2")
        await markers("m2")
        assert seen()[3:] == [("member_removed", "u2")]

        await node.call("disconnect", client="u1-b")
        await receiver.wait_names("channel_vacated", channel="presence-hooks")
        await markers("m3")
        assert seen()[3:] == [("member_removed", "u2"), ("member_removed", "u1"), ("channel_vacated", None)]
        assert all(post["verified"] for post in receiver.posts)
    finally:
        await node.close()
        await receiver.stop()
