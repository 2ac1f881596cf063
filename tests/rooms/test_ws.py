"""Every rooms operation over the WebSocket, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest

from models.rooms import Membership, Message, Room
from tests.rooms.conftest import create_room


async def test_rooms_create_get_list_members_invite_join_leave(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    await sw.token("carol")
    room = await create_room(alice, "general", topic="all things", public=True)
    assert room["name"] == "general" and room["topic"] == "all things" and room["public"] is True
    assert room["owner"] == "alice" and room["role"] == "owner" and room["unread"] == 0
    assert room["channel"] == f"room:{room['id']}" and room["typing_channel"] == f"typing:{room['id']}"
    private = await create_room(alice, "staff")
    assert private["public"] is False

    got = await alice.result("rooms.get", room=room["id"])
    assert got["room"]["name"] == "general" and got["room"]["role"] == "owner"
    # A public room can be looked at before joining; it has no role for bob yet.
    assert "role" not in (await bob.result("rooms.get", room=room["id"]))["room"]

    joined = await bob.result("rooms.join", room=room["id"])
    assert joined["member"] == {**joined["member"], "room": room["id"], "user": "bob", "role": "member"}
    invited = await alice.result("rooms.invite", room=private["id"], user="Carol", role="admin")
    assert invited["member"]["user"] == "carol" and invited["member"]["role"] == "admin"

    members = (await alice.result("rooms.members", room=room["id"]))["members"]
    assert [(m["user"], m["role"]) for m in members] == [("alice", "owner"), ("bob", "member")]

    mine = await alice.result("rooms.list")
    assert [r["name"] for r in mine["rooms"]] == ["staff", "general"] and mine["next"] is None
    public = await bob.result("rooms.list", scope="public")
    assert [(r["name"], r.get("role")) for r in public["rooms"]] == [("general", "member")]

    assert await bob.result("rooms.leave", room=room["id"]) == {}
    assert (await bob.result("rooms.list"))["rooms"] == []
    assert await Membership.filter(room_id=room["id"]).count() == 1


async def test_messages_send_get_edit_delete_list_typing_read(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    room = await create_room(alice, public=True)
    await bob.result("rooms.join", room=room["id"])

    sent = (await alice.result("messages.send", room=room["id"], body="hello"))["message"]
    assert sent["author"] == "alice" and sent["body"] == "hello" and sent["deleted"] is False
    assert sent["edited_at"] is None and sent["room"] == room["id"]
    assert (await bob.result("messages.get", room=room["id"], message=sent["id"]))["message"] == sent

    edited = (await alice.result("messages.edit", room=room["id"], message=sent["id"], body="hello!"))["message"]
    assert edited["body"] == "hello!" and edited["edited_at"] is not None

    second = (await bob.result("messages.send", room=room["id"], body="hi alice"))["message"]
    page = await bob.result("messages.list", room=room["id"])
    assert [m["body"] for m in page["messages"]] == ["hello!", "hi alice"] and page["next"] is None

    assert (await bob.result("rooms.get", room=room["id"]))["room"]["unread"] == 1
    read = await bob.result("read", room=room["id"], message=sent["id"])
    assert read == {"room": room["id"], "unread": 0, "last_read": sent["id"]}
    # The marker never moves back.
    assert (await bob.result("read", room=room["id"], message=sent["id"]))["last_read"] == sent["id"]

    deleted = (await bob.result("messages.delete", room=room["id"], message=second["id"]))["message"]
    assert deleted["deleted"] is True and deleted["body"] is None and deleted["author"] == "bob"
    row = await Message.get(id=second["id"])
    assert row.body == "" and row.deleted_at is not None
    tombstone = (await alice.result("messages.list", room=room["id"]))["messages"][-1]
    assert tombstone == {**deleted}
    await alice.assert_error(113, "messages.edit", room=room["id"], message=second["id"], body="x")

    assert await bob.result("typing", room=room["id"]) == {}


@pytest.mark.parametrize(
    "command,params,field",
    [
        ("messages.send", {"body": ""}, "body"),
        ("messages.send", {"body": "   \n"}, "body"),
        ("messages.send", {"body": "x" * 4001}, "body"),
        ("messages.send", {"body": 5}, "body"),
        ("messages.send", {}, "body"),
        ("rooms.create", {"name": " "}, "name"),
        ("rooms.create", {"name": "x" * 65}, "name"),
        ("rooms.invite", {"user": "no spaces allowed"}, "user"),
        ("rooms.invite", {"user": "dave", "role": "owner"}, "role"),
        ("messages.list", {"before": 1, "after": 2}, "body"),
        ("messages.list", {"limit": 0}, "limit"),
        ("messages.edit", {"message": "1", "body": "x"}, "message"),
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bad_input_gets_a_message_per_field_and_writes_nothing(sw, command, params, field):
    alice = await sw.client("alice")
    room = await create_room(alice)
    if command != "rooms.create":
        params = {"room": room["id"], **params}
    error = await alice.assert_error(107, command, **params)
    assert field in error["fields"], error
    assert await Message.all().count() == 0
    assert await Room.all().count() == 1


async def test_unknown_room_and_message_are_not_found(sw):
    alice = await sw.client("alice")
    room = await create_room(alice)
    for command, params in [("messages.send", {"body": "x"}), ("rooms.join", {}), ("rooms.get", {}),
                            ("messages.list", {}), ("typing", {}), ("rooms.members", {})]:
        error = await alice.assert_error(113, command, room=room["id"] + 1000, **params)
        assert error["fields"] == {"room": "no such room"}
    error = await alice.assert_error(113, "messages.get", room=room["id"], message=99)
    assert error["fields"] == {"message": "no such message"}
    await alice.assert_error(113, "read", room=room["id"], message=99)
    await alice.assert_error(113, "rooms.invite", room=room["id"], user="nobody")


async def test_conflicts(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    room = await create_room(alice, public=True)
    await bob.result("rooms.join", room=room["id"])
    await bob.assert_error(110, "rooms.join", room=room["id"])
    await alice.assert_error(110, "rooms.invite", room=room["id"], user="bob")
    await alice.assert_error(110, "rooms.leave", room=room["id"])  # the owner stays


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_max_body_comes_from_settings(make_stagewire, tmp_path, database_url):
    from tests.rooms.conftest import rooms_settings

    sw = await make_stagewire(rooms_settings(tmp_path, database_url, max_body=10))
    alice = await sw.client("alice")
    room = await create_room(alice)
    assert (await alice.result("messages.send", room=room["id"], body="é" * 10))["message"]["body"] == "é" * 10
    error = await alice.assert_error(107, "messages.send", room=room["id"], body="x" * 11)
    assert error["fields"] == {"body": "at most 10 characters"}


async def test_rooms_without_their_namespaces_are_refused_before_any_write(make_stagewire, tmp_path):
    from tests.conftest import make_settings

    sw = await make_stagewire(make_settings(tmp_path))  # no typing namespace
    alice = await sw.client("alice")
    error = await alice.assert_error(104, "rooms.create", name="general")
    assert "[namespaces.typing]" in error["message"]
    assert await Room.all().count() == 0


async def test_the_room_list_counts_each_rooms_unread_messages(sw):
    """Each room's own marker; the caller's messages and deleted ones do not count; rooms never read count all."""
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    rooms = [await create_room(alice, f"r{i}", public=True) for i in range(3)]
    for room in rooms:
        await bob.result("rooms.join", room=room["id"])
    sent = {room["id"]: [] for room in rooms}
    for count, room in zip((4, 2, 0), rooms):
        for i in range(count):
            sent[room["id"]].append((await alice.result("messages.send", room=room["id"], body=f"m{i}"))["message"]["id"])
    await bob.result("messages.send", room=rooms[0]["id"], body="mine")  # bob's own: never unread for bob
    await alice.result("messages.delete", room=rooms[0]["id"], message=sent[rooms[0]["id"]][3])  # gone: not unread
    await bob.result("read", room=rooms[0]["id"], message=sent[rooms[0]["id"]][0])  # room 0: read up to the first
    listed = {r["id"]: r["unread"] for r in (await bob.result("rooms.list"))["rooms"]}
    # room 0: 4 sent, 1 read, 1 deleted → 2; room 1: 2 (never read); room 2: 0
    assert listed == {rooms[0]["id"]: 2, rooms[1]["id"]: 2, rooms[2]["id"]: 0}
    for room in rooms:  # the same figures as one room's own
        assert (await bob.result("rooms.get", room=room["id"]))["room"]["unread"] == listed[room["id"]]
