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
from tests.pusher.helpers import APP_ID, KEY, SECRET
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
