"""Who may do what: members read and post, authors edit, admins moderate."""

from __future__ import annotations

from models.rooms import Message
from tests.rooms.conftest import auth_headers, create_room, http


async def test_a_non_member_cannot_subscribe_read_or_post(sw):
    alice = await sw.client("alice")
    mallory = await sw.client("mallory")
    room = await create_room(alice)  # private
    sent = (await alice.result("messages.send", room=room["id"], body="secret"))["message"]

    for channel in (room["channel"], room["typing_channel"]):
        await mallory.assert_error(103, "subscribe", channel=channel)
        await mallory.assert_error(103, "history", channel=channel)
        await mallory.assert_error(103, "presence", channel=channel)
    await mallory.assert_error(103, "rooms.get", room=room["id"])
    await mallory.assert_error(103, "rooms.members", room=room["id"])
    await mallory.assert_error(103, "messages.list", room=room["id"])
    await mallory.assert_error(103, "messages.get", room=room["id"], message=sent["id"])
    await mallory.assert_error(103, "messages.send", room=room["id"], body="let me in")
    await mallory.assert_error(103, "messages.delete", room=room["id"], message=sent["id"])
    await mallory.assert_error(103, "typing", room=room["id"])
    await mallory.assert_error(103, "read", room=room["id"], message=sent["id"])
    await mallory.assert_error(103, "rooms.join", room=room["id"])  # private: invitation only
    await mallory.assert_error(103, "rooms.invite", room=room["id"], user="mallory")
    # Channels that are not rooms at all are refused too.
    await mallory.assert_error(103, "subscribe", channel="room:general")
    status, body = await http(sw, "GET", f"/api/rooms/{room['id']}/messages", await auth_headers(sw, "mallory"))
    assert status == 403 and body["error"]["code"] == 103
    assert await Message.all().count() == 1


async def test_only_the_author_edits_and_only_author_or_admin_deletes(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    carol = await sw.client("carol")
    room = await create_room(alice, public=True)
    await bob.result("rooms.join", room=room["id"])
    await alice.result("rooms.invite", room=room["id"], user="carol", role="admin")
    mine = (await bob.result("messages.send", room=room["id"], body="bob's"))["message"]
    owners = (await alice.result("messages.send", room=room["id"], body="alice's"))["message"]

    error = await alice.assert_error(103, "messages.edit", room=room["id"], message=mine["id"], body="hacked")
    assert "author" in error["message"]
    await carol.assert_error(103, "messages.edit", room=room["id"], message=mine["id"], body="hacked")
    await bob.assert_error(103, "messages.delete", room=room["id"], message=owners["id"])
    assert (await Message.get(id=mine["id"])).body == "bob's"

    # Admins (and the owner) moderate.
    assert (await carol.result("messages.delete", room=room["id"], message=mine["id"]))["message"]["deleted"]
    assert (await alice.result("messages.delete", room=room["id"], message=owners["id"]))["message"]["deleted"]


async def test_invitation_rules(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    await sw.token("carol")
    await sw.token("dave")
    public = await create_room(alice, "public", public=True)
    private = await create_room(alice, "private")
    await bob.result("rooms.join", room=public["id"])
    await alice.result("rooms.invite", room=private["id"], user="bob")
    # Members invite members into a public room, but not admins, and not into a private room.
    await bob.result("rooms.invite", room=public["id"], user="carol")
    await bob.assert_error(103, "rooms.invite", room=public["id"], user="dave", role="admin")
    await bob.assert_error(103, "rooms.invite", room=private["id"], user="dave")


async def test_membership_changes_reach_the_authorizer_at_once(sw):
    """The membership cache is invalidated on every change: no stale yes or no."""
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    room = await create_room(alice)
    await bob.assert_error(103, "subscribe", channel=room["channel"])  # a cached "no"
    await alice.result("rooms.invite", room=room["id"], user="bob")
    await bob.result("subscribe", channel=room["channel"])  # now a cached "yes"
    await bob.recv_push("join", channel=room["channel"])
    await bob.result("subscribe", channel=room["typing_channel"])
    await bob.result("rooms.leave", room=room["id"])
    left = await bob.recv_push("pub", channel=room["channel"])
    assert left["data"] == {"event": "member.left", "room": room["id"], "user": "bob"}
    # The former member was unsubscribed from both channels on its node, and told so...
    for channel in (room["channel"], room["typing_channel"]):
        push = await bob.recv_push("unsubscribe", channel=channel)
        assert push["reason"] == "no longer a member of the room"
    await alice.result("messages.send", room=room["id"], body="after bob left")
    await alice.result("typing", room=room["id"])
    await bob.assert_quiet()
    # ...and may not come back.
    await bob.assert_error(103, "subscribe", channel=room["channel"])
    await bob.assert_error(103, "subscribe", channel=room["typing_channel"])
