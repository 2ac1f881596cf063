"""Application extension points: custom channel authorizers and control messages."""

from __future__ import annotations

import asyncio

from handlers import REGISTRY
from server.appkeys import NODE
from tests.conftest import NAMESPACES, make_settings


async def only_team_members(identity, channel: str) -> bool:
    return identity.username in ("alice", "carol") and channel.endswith(":red")


async def test_custom_namespace_asks_the_application(make_stagewire, tmp_path):
    namespaces = {**NAMESPACES, "team": {"subscribe": "custom", "presence": True},
                  "orphan": {"subscribe": "custom"}}
    sw = await make_stagewire(make_settings(tmp_path, namespaces=namespaces),
                              registry=REGISTRY.replace(authorizers={"team": only_team_members}))
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    assert (await alice.result("subscribe", channel="team:red"))["offset"] == 0
    await alice.assert_error(103, "subscribe", channel="team:blue")
    await bob.assert_error(103, "subscribe", channel="team:red")
    await bob.assert_error(103, "history", channel="team:red")
    await bob.assert_error(103, "presence", channel="team:red")
    assert (await alice.result("presence", channel="team:red"))["users"] == [{"user": "alice", "connections": 1}]
    # A custom namespace without an authorizer lets nobody in.
    await alice.assert_error(103, "subscribe", channel="orphan:x")


async def test_control_messages_reach_listeners_on_every_node(stagewire):
    node = stagewire.app[NODE]
    got: list[dict] = []
    arrived = asyncio.Event()

    def listener(message: dict) -> None:
        got.append(message)
        arrived.set()

    node.on_control_message("cache.drop", listener)
    await node.broadcast_control("cache.drop", {"key": "room:7"})
    await asyncio.wait_for(arrived.wait(), 5)
    assert got == [{"key": "room:7", "op": "cache.drop"}]
