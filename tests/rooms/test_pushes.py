"""Every change is pushed to the right channel, and to nobody else."""

from __future__ import annotations

import pytest

from tests.rooms.conftest import create_room

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def _room_with_subscribers(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    outsider = await sw.client("outsider")
    room = await create_room(alice, public=True)
    await bob.result("rooms.join", room=room["id"])
    for client in (alice, bob):
        await client.result("subscribe", channel=room["channel"])
    for client, user in ((alice, "alice"), (alice, "bob"), (bob, "bob")):
        await client.recv_push("join", channel=room["channel"], info={"user": user})
    await outsider.result("subscribe", channel="user:outsider")
    return alice, bob, outsider, room


async def test_message_events_reach_every_room_subscriber(sw):
    alice, bob, outsider, room = await _room_with_subscribers(sw)
    channel = room["channel"]
    sent = (await bob.result("messages.send", room=room["id"], body="hi"))["message"]
    edited = (await bob.result("messages.edit", room=room["id"], message=sent["id"], body="hi!"))["message"]
    await alice.result("messages.delete", room=room["id"], message=sent["id"])
    for client in (alice, bob):
        created = await client.recv_push("pub", channel=channel)
        assert created["data"] == {"event": "message.created", "message": sent}
        assert created["info"] == {"user": "bob"}
        assert (await client.recv_push("pub", channel=channel))["data"] == {"event": "message.edited",
                                                                             "message": edited}
        deleted = await client.recv_push("pub", channel=channel)
        assert deleted["data"] == {"event": "message.deleted", "room": room["id"], "id": sent["id"]}
        assert deleted["info"] == {"user": "alice"}
    await outsider.assert_quiet()


async def test_membership_events_and_invitations(sw):
    alice, bob, outsider, room = await _room_with_subscribers(sw)
    carol = await sw.client("carol")
    await carol.result("subscribe", channel="user:carol")
    await alice.result("rooms.invite", room=room["id"], user="carol")
    invited = {"event": "member.invited", "room": room["id"], "user": "carol", "role": "member", "by": "alice"}
    for client in (alice, bob):
        assert (await client.recv_push("pub", channel=room["channel"]))["data"] == invited
    invitation = await carol.recv_push("pub", channel="user:carol")
    assert invitation["data"]["event"] == "room.invited" and invitation["data"]["by"] == "alice"
    assert invitation["data"]["room"]["id"] == room["id"] and invitation["data"]["room"]["role"] == "member"

    dave = await sw.client("dave")
    await dave.result("rooms.join", room=room["id"])
    joined = {"event": "member.joined", "room": room["id"], "user": "dave", "role": "member"}
    assert (await bob.recv_push("pub", channel=room["channel"]))["data"] == joined
    await dave.result("rooms.leave", room=room["id"])
    left = {"event": "member.left", "room": room["id"], "user": "dave"}
    assert (await bob.recv_push("pub", channel=room["channel"]))["data"] == left
    await outsider.assert_quiet()
    await dave.assert_quiet()  # it never subscribed


async def test_read_pushes_the_unread_count_to_the_readers_own_channel_only(sw):
    alice, bob, outsider, room = await _room_with_subscribers(sw)
    other_tab = await sw.client("bob")
    await other_tab.result("subscribe", channel="user:bob")
    await alice.result("subscribe", channel="user:alice")
    ids = [(await alice.result("messages.send", room=room["id"], body=f"m{i}"))["message"]["id"] for i in range(3)]
    assert (await bob.result("rooms.get", room=room["id"]))["room"]["unread"] == 3
    await bob.result("read", room=room["id"], message=ids[0])
    push = await other_tab.recv_push("pub", channel="user:bob")
    assert push["data"] == {"event": "unread", "room": room["id"], "unread": 2, "last_read": ids[0]}
    await alice.result("messages.delete", room=room["id"], message=ids[2])  # deleted ones do not count
    await bob.result("read", room=room["id"], message=ids[0])
    assert (await other_tab.recv_push("pub", channel="user:bob"))["data"]["unread"] == 1
    for _ in range(4):  # 3 created, 1 deleted, on the room channel
        pub = await alice.recv_push("pub", channel=room["channel"])
        assert pub["data"]["event"].startswith("message.")
    await alice.assert_quiet()
    await outsider.assert_quiet()


async def test_typing_is_pushed_to_the_typing_channel_and_never_stored(sw):
    alice, bob, outsider, room = await _room_with_subscribers(sw)
    await alice.result("subscribe", channel=room["typing_channel"])
    await bob.result("typing", room=room["id"])
    push = await alice.recv_push("pub", channel=room["typing_channel"])
    assert push["data"] == {"event": "typing", "room": room["id"], "user": "bob"}
    history = await alice.result("history", channel=room["typing_channel"])
    assert history["publications"] == [] and history["offset"] == 1
    room_history = (await alice.result("history", channel=room["channel"]))["publications"]
    assert [p["data"]["event"] for p in room_history] == ["member.joined"]
    await bob.assert_quiet()  # not subscribed to typing; nothing on the room channel
    await outsider.assert_quiet()
