"""Channel commands end to end: subscribe, publish, permissions, join/leave, limits."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from server.appkeys import NODE
from tests.conftest import make_settings


async def test_publish_reaches_every_subscriber_with_offset_and_author(stagewire):
    alice = await stagewire.client("alice")
    bob = await stagewire.client("bob", subprotocol="stagewire.msgpack")
    sub_a = await alice.result("subscribe", channel="quiet:room1")
    sub_b = await bob.result("subscribe", channel="quiet:room1")
    assert sub_a["offset"] == sub_b["offset"] == 0 and sub_a["epoch"] == sub_b["epoch"]
    first = await alice.result("publish", channel="quiet:room1", data={"text": "hi"})
    second = await bob.result("publish", channel="quiet:room1", data=[1, 2, 3])
    assert (first["offset"], second["offset"]) == (1, 2)
    for client in (alice, bob):
        p1 = await client.recv_push("pub")
        p2 = await client.recv_push("pub")
        assert p1 == {"type": "pub", "channel": "quiet:room1", "offset": 1, "data": {"text": "hi"}, "info": {"user": "alice"}}
        assert p2["offset"] == 2 and p2["data"] == [1, 2, 3] and p2["info"] == {"user": "bob"}


async def test_subscribe_reports_the_current_position(stagewire):
    alice = await stagewire.client("alice")
    for i in range(3):
        await alice.result("publish", channel="quiet:pos", data=i)
    bob = await stagewire.client("bob")
    result = await bob.result("subscribe", channel="quiet:pos")
    assert result["offset"] == 3 and isinstance(result["epoch"], str) and result["epoch"]


async def test_unsubscribe_stops_delivery(stagewire):
    alice = await stagewire.client("alice")
    bob = await stagewire.client("bob")
    await bob.result("subscribe", channel="quiet:u")
    await bob.result("unsubscribe", channel="quiet:u")
    await alice.result("publish", channel="quiet:u", data=1)
    await bob.assert_quiet()
    await bob.assert_error(108, "unsubscribe", channel="quiet:u")


async def test_permissions_and_coded_refusals_keep_the_connection_open(stagewire):
    alice = await stagewire.client("alice")
    await alice.assert_error(102, "subscribe", channel="nosuch:room")
    await alice.assert_error(102, "publish", channel="nosuch:room", data=1)
    await alice.assert_error(103, "subscribe", channel="user:bob")
    assert (await alice.result("subscribe", channel="user:alice"))["offset"] == 0
    await alice.assert_error(103, "publish", channel="news:main", data=1)
    await alice.assert_error(103, "publish", channel="room:r1", data=1)
    await alice.result("subscribe", channel="room:r1")
    assert (await alice.result("publish", channel="room:r1", data=1))["offset"] == 1
    await alice.assert_error(105, "subscribe", channel="room:r1")
    await alice.assert_error(103, "subscribe", channel="ops:stats")
    assert await alice.result("ping") == {}


async def test_admins_may_subscribe_to_admin_namespaces(stagewire):
    root = await stagewire.client("root")
    assert root.connect_result["user"]["role"] == "admin"
    assert (await root.result("subscribe", channel="ops:stats"))["offset"] == 0


async def test_join_and_leave_are_per_user_and_follow_the_namespace_setting(stagewire):
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="chat:lobby")
    # Subscribers see every join, their own included.
    await alice.recv_push("join", channel="chat:lobby", info={"user": "alice"})
    await alice.result("subscribe", channel="quiet:lobby")
    bob_tab1 = await stagewire.client("bob")
    bob_tab2 = await stagewire.client("bob")
    for tab in (bob_tab1, bob_tab2):
        await tab.result("subscribe", channel="chat:lobby")
        await tab.result("subscribe", channel="quiet:lobby")
    await alice.recv_push("join", channel="chat:lobby", info={"user": "bob"})
    assert await alice.result("presence", channel="chat:lobby") == {
        "users": [{"user": "alice", "connections": 1}, {"user": "bob", "connections": 2}]
    }
    assert await alice.result("presence_stats", channel="chat:lobby") == {"clients": 3, "users": 2}
    await bob_tab1.result("unsubscribe", channel="chat:lobby")
    await bob_tab2.close()  # bob's last tab leaves: now bob has left
    await alice.recv_push("leave", channel="chat:lobby", info={"user": "bob"})
    await alice.assert_quiet()  # one join and one leave for bob; none for quiet:lobby
    assert await alice.result("presence_stats", channel="chat:lobby") == {"clients": 1, "users": 1}
    await alice.assert_error(103, "presence", channel="quiet:lobby")


async def test_leave_is_pushed_when_a_subscriber_disconnects(stagewire):
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="chat:gone")
    bob = await stagewire.client("bob")
    await bob.result("subscribe", channel="chat:gone")
    await alice.recv_push("join", channel="chat:gone", info={"user": "bob"})
    await bob.close()
    leave = await alice.recv_push("leave", channel="chat:gone")
    assert leave["info"] == {"user": "bob"}


async def test_subscription_limit(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"max_subscriptions": 2}))
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="quiet:1")
    await alice.result("subscribe", channel="quiet:2")
    await alice.assert_error(106, "subscribe", channel="quiet:3")


async def test_one_frame_carries_everything_queued_in_one_tick(stagewire):
    alice = await stagewire.client("alice")
    channels = [f"quiet:c{i}" for i in range(20)]
    for channel in channels:
        await alice.result("subscribe", channel=channel)
    status, body = await stagewire.api("POST", "/api/broadcast", {"channels": channels, "data": "x"})
    assert status == 200
    frame = await asyncio.wait_for(alice.ws.recv(), 5)
    lines = frame.split("\n")
    assert len(lines) == 20, "20 publications made in one tick must share one frame"


async def test_slow_client_is_disconnected_alone(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"write_buffer_limit": 65536}))
    slow = await sw.client("slow", ping_interval=None, max_size=None)
    fast = await sw.client("fast", max_size=None)
    await slow.result("subscribe", channel="quiet:firehose")
    await fast.result("subscribe", channel="quiet:firehose")
    slow.ws.transport.pause_reading()
    payload = "x" * 32768
    node = sw.app[NODE]
    for i in range(400):
        status, _ = await sw.api("POST", "/api/publish", {"channel": "quiet:firehose", "data": payload})
        assert status == 200
        assert (await fast.recv_push("pub"))["offset"] == i + 1
        if node.counters.slow_disconnects:
            break
    assert node.counters.slow_disconnects == 1, "the client that stopped reading must be cut off"
    assert fast.connect_result["client"] in node.connections
    # Its socket is backed up, so a disconnect push would wait behind what it did not
    # read: it is aborted, its buffers released within a few loop iterations
    # (docs/protocol.md, 4001), and the node forgets it.
    for _ in range(100):
        if slow.connect_result["client"] not in node.connections:
            break
        await asyncio.sleep(0.01)
    assert slow.connect_result["client"] not in node.connections
    slow.ws.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        while True:  # what reached its socket before the abort, then the end
            await slow.recv(timeout=10)
    assert slow.ws.close_code == 1006


async def test_pipelined_publishes_answer_in_command_order_and_later_commands_see_them(stagewire):
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="room:p")
    frame = [
        {"id": 1, "type": "publish", "channel": "room:p", "data": 1},
        {"id": 2, "type": "publish", "channel": "news:main", "data": "refused"},
        {"id": 3, "type": "publish", "channel": "room:p", "data": 2},
        {"id": 4, "type": "history", "channel": "room:p"},  # not pipelined: waits for 1-3
        {"id": 5, "type": "publish", "channel": "room:p", "data": 3},
    ]
    await alice.send_raw("\n".join(alice.encode(m) for m in frame))
    replies = []
    while len(replies) < len(frame):
        message = await alice.recv()
        if "id" in message:
            replies.append(message)
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert replies[0]["result"]["offset"] == 1 and replies[2]["result"]["offset"] == 2
    assert replies[1]["error"]["code"] == 103
    assert [p["data"] for p in replies[3]["result"]["publications"]] == [1, 2]
    assert replies[4]["result"]["offset"] == 3
