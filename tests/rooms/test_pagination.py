"""Cursor pages over many messages, backwards and forwards, with tombstones kept in place."""

from __future__ import annotations

from tests.rooms.conftest import create_room

COUNT, PAGE = 120, 50


async def _send_many(client, room_id: int, count: int) -> list[int]:
    # Pipelined: every command is sent before the first reply is read.
    command_ids = [await client.send("messages.send", room=room_id, body=f"m{i}") for i in range(count)]
    replies = [await client.reply(c) for c in command_ids]
    return [r["result"]["message"]["id"] for r in replies]


async def test_pages_of_a_long_room(sw):
    alice = await sw.client("alice")
    room = await create_room(alice)
    ids = await _send_many(alice, room["id"], COUNT)
    assert ids == sorted(ids)

    # Backwards from the newest, as a chat client scrolls up.
    seen, cursor, pages = [], None, 0
    while True:
        params = {"before": cursor} if cursor is not None else {}
        page = await alice.result("messages.list", room=room["id"], limit=PAGE, **params)
        bodies = [m["body"] for m in page["messages"]]
        assert bodies == sorted(bodies, key=lambda b: int(b[1:])), "oldest first within a page"
        seen = bodies + seen
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
        assert cursor == page["messages"][0]["id"]
    assert pages == 3 and seen == [f"m{i}" for i in range(COUNT)]

    # Forwards from a known message, as a client catching up after a reconnect.
    page = await alice.result("messages.list", room=room["id"], after=ids[9], limit=PAGE)
    assert [m["id"] for m in page["messages"]] == ids[10:60] and page["next"] == ids[59]
    page = await alice.result("messages.list", room=room["id"], after=page["next"], limit=PAGE)
    assert [m["id"] for m in page["messages"]] == ids[60:110]
    page = await alice.result("messages.list", room=room["id"], after=page["next"], limit=PAGE)
    assert [m["id"] for m in page["messages"]] == ids[110:] and page["next"] is None


async def test_new_and_deleted_messages_do_not_shift_a_cursor(sw):
    alice = await sw.client("alice")
    room = await create_room(alice)
    ids = await _send_many(alice, room["id"], 10)
    first = await alice.result("messages.list", room=room["id"], limit=4)
    assert [m["id"] for m in first["messages"]] == ids[6:]
    await _send_many(alice, room["id"], 3)  # arrive while the user scrolls
    await alice.result("messages.delete", room=room["id"], message=ids[4])
    second = await alice.result("messages.list", room=room["id"], before=first["next"], limit=4)
    assert [m["id"] for m in second["messages"]] == ids[2:6]
    assert [m["deleted"] for m in second["messages"]] == [False, False, True, False]


async def test_rooms_list_pages_newest_first(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    rooms = [await create_room(alice, f"r{i}", public=True) for i in range(5)]
    await bob.result("rooms.join", room=rooms[1]["id"])
    names, cursor = [], None
    while True:
        params = {"before": cursor} if cursor is not None else {}
        page = await alice.result("rooms.list", limit=2, **params)
        names += [r["name"] for r in page["rooms"]]
        if (cursor := page["next"]) is None:
            break
    assert names == ["r4", "r3", "r2", "r1", "r0"]
    public = await bob.result("rooms.list", scope="public", limit=3)
    assert [(r["name"], r.get("role")) for r in public["rooms"]] == [("r4", None), ("r3", None), ("r2", None)]
    rest = await bob.result("rooms.list", scope="public", limit=3, before=public["next"])
    assert [(r["name"], r.get("role")) for r in rest["rooms"]] == [("r1", "member"), ("r0", None)]
    assert rest["next"] is None
