"""The rooms REST API: every route, its status codes and errors, pushes from HTTP changes."""

from __future__ import annotations

import pytest

from models.rooms import Message
from tests.rooms.conftest import auth_headers, create_room, http


async def test_every_route_over_http(sw):
    alice = await auth_headers(sw, "alice")
    bob = await auth_headers(sw, "bob")
    await sw.token("carol")

    status, body = await http(sw, "POST", "/api/rooms", alice, {"name": "general", "public": True})
    assert status == 201 and body["room"]["owner"] == "alice"
    room = body["room"]["id"]
    base = f"/api/rooms/{room}"
    status, body = await http(sw, "GET", base, alice)
    assert status == 200 and body["room"]["name"] == "general"

    status, body = await http(sw, "POST", f"{base}/membership", bob)
    assert status == 201 and body["member"]["role"] == "member"
    status, body = await http(sw, "POST", f"{base}/members", alice, {"user": "carol"})
    assert status == 201 and body["member"]["user"] == "carol"
    status, body = await http(sw, "GET", f"{base}/members", bob)
    assert status == 200 and [m["user"] for m in body["members"]] == ["alice", "bob", "carol"]

    status, body = await http(sw, "POST", f"{base}/messages", alice, {"body": "hello"})
    assert status == 201 and body["message"]["body"] == "hello"
    message = body["message"]["id"]
    status, body = await http(sw, "GET", f"{base}/messages/{message}", bob)
    assert status == 200 and body["message"]["body"] == "hello"
    status, body = await http(sw, "PATCH", f"{base}/messages/{message}", alice, {"body": "hello!"})
    assert status == 200 and body["message"]["body"] == "hello!" and body["message"]["edited_at"]
    status, body = await http(sw, "POST", f"{base}/messages", bob, {"body": "second"})
    status, body = await http(sw, "GET", f"{base}/messages", bob, limit="1")
    assert status == 200 and [m["body"] for m in body["messages"]] == ["second"]
    status, body = await http(sw, "GET", f"{base}/messages", bob, limit=1, before=body["next"])
    assert [m["body"] for m in body["messages"]] == ["hello!"] and body["next"] is None

    status, body = await http(sw, "POST", f"{base}/read", bob, {"message": message})
    assert status == 200 and body == {"room": room, "unread": 0, "last_read": message}
    status, body = await http(sw, "POST", f"{base}/typing", bob)
    assert status == 200 and body == {}
    status, body = await http(sw, "GET", "/api/rooms", bob)
    assert status == 200 and [(r["id"], r["unread"]) for r in body["rooms"]] == [(room, 0)]
    status, body = await http(sw, "GET", "/api/rooms", bob, scope="public")
    assert status == 200 and [r["id"] for r in body["rooms"]] == [room]

    status, body = await http(sw, "DELETE", f"{base}/messages/{message}", alice)
    assert status == 200 and body["message"]["deleted"] is True
    status, body = await http(sw, "DELETE", f"{base}/membership", bob)
    assert status == 200 and body == {}
    status, body = await http(sw, "GET", f"{base}/messages", bob)
    assert status == 403 and body["error"]["code"] == 103


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_http_errors(sw):
    alice = await auth_headers(sw, "alice")
    status, body = await http(sw, "POST", "/api/rooms", {}, {"name": "x"})
    assert status == 401 and body["error"]["code"] == 101
    status, body = await http(sw, "POST", "/api/rooms", {"Authorization": "Bearer nope"}, {"name": "x"})
    assert status == 401
    status, body = await http(sw, "GET", "/api/rooms/999", alice)
    assert status == 404 and body["error"] == {"code": 113, "message": "no room 999",
                                               "fields": {"room": "no such room"}}
    status, body = await http(sw, "GET", "/api/rooms/abc", alice)
    assert status == 404 and body["error"]["code"] == 113
    status, body = await http(sw, "POST", "/api/rooms", alice, {"name": "", "public": "yes"})
    assert status == 422 and set(body["error"]["fields"]) == {"name", "public"}
    room = (await http(sw, "POST", "/api/rooms", alice, {"name": "r"}))[1]["room"]["id"]
    status, body = await http(sw, "POST", f"/api/rooms/{room}/messages", alice, {"body": ""})
    assert status == 422 and body["error"]["fields"] == {"body": "must not be empty"}
    status, body = await http(sw, "GET", f"/api/rooms/{room}/messages", alice, limit="many")
    assert status == 422 and "limit" in body["error"]["fields"]
    async with sw.http.post(f"{sw.url}/api/rooms/{room}/messages", data="[1]", headers=alice) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == 107
    status, body = await http(sw, "PUT", f"/api/rooms/{room}", alice)
    assert status == 405
    assert await Message.all().count() == 0


async def test_http_changes_are_pushed_like_websocket_ones(sw):
    alice_ws = await sw.client("alice")
    room = await create_room(alice_ws, public=True)
    await alice_ws.result("subscribe", channel=room["channel"])
    bob = await auth_headers(sw, "bob")
    status, _ = await http(sw, "POST", f"/api/rooms/{room['id']}/membership", bob)
    assert status == 201
    push = await alice_ws.recv_push("pub", channel=room["channel"])
    assert push["data"]["event"] == "member.joined" and push["info"] == {"user": "bob"}
    status, body = await http(sw, "POST", f"/api/rooms/{room['id']}/messages", bob, {"body": "over http"})
    push = await alice_ws.recv_push("pub", channel=room["channel"])
    assert push["data"] == {"event": "message.created", "message": body["message"]}
