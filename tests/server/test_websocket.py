"""End to end over a real socket: handshake, encodings, errors, limits, closing."""

from __future__ import annotations

import asyncio
import socket

import msgpack
import pytest
import websockets

from server.appkeys import NODE
from tests.conftest import make_settings
from tests.helpers import connect_ws


async def test_connect_returns_client_user_and_ping(stagewire):
    client = await stagewire.client("alice")
    result = client.connect_result
    assert isinstance(result["client"], str) and result["client"]
    assert result["user"]["username"] == "alice"
    assert result["ping"] == 25.0
    assert 0 < result["expires_in"] <= 3600


async def test_msgpack_connection_uses_binary_frames(stagewire):
    client = await stagewire.client("alice", subprotocol="stagewire.msgpack")
    assert client.ws.subprotocol == "stagewire.msgpack"
    await client.send("ping")
    frame = await client.ws.recv()
    assert isinstance(frame, bytes)
    assert msgpack.unpackb(frame, raw=False) == {"id": 2, "result": {}}


async def test_json_is_the_default_without_a_subprotocol(stagewire):
    client = await stagewire.client("alice", subprotocol=None)
    assert client.ws.subprotocol is None
    assert await client.result("ping") == {}


async def test_first_command_must_be_connect(stagewire):
    client = await stagewire.raw_client()
    reply = await client.call("subscribe", channel="chat:a")
    assert reply["error"]["code"] == 101
    push, close_code = await client.recv_disconnect()
    assert push == {"type": "disconnect", "code": 4501, "reason": push["reason"], "reconnect": False}
    assert close_code == 4501


async def test_bad_token_is_refused_and_closed(stagewire):
    client = await stagewire.raw_client()
    await client.assert_error(101, "connect", token="not-a-token")
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == 4501 and push["reconnect"] is False


async def test_garbage_before_connect_gets_an_error_and_a_close(stagewire):
    client = await stagewire.raw_client()
    await client.send_raw("{{{")
    error = await client.recv_push("error")
    assert error["error"]["code"] == 107
    push, close_code = await client.recv_disconnect()
    assert close_code == 4500 and push["reconnect"] is False


async def test_connect_must_come_in_time(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"connect_timeout": 0.2}))
    client = await sw.raw_client()
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == 4504


async def test_pings_do_not_stand_for_connect_and_a_connected_client_outlives_the_deadline(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"connect_timeout": 0.3}))
    deadlines = sw.app[NODE].connect_deadlines
    pinging = await sw.raw_client()
    connected = await sw.client("alice")
    assert len(deadlines) == 1  # the pinging one; connect cancelled the other's
    for _ in range(3):
        await (await pinging.ws.ping())
    push, close_code = await pinging.recv_disconnect()
    assert push["code"] == close_code == 4504
    assert len(deadlines) == 0
    assert (await connected.call("ping")).get("result") is not None  # past its deadline, still served


async def test_a_client_gone_before_connect_leaves_no_deadline(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"connect_timeout": 30}))
    node = sw.app[NODE]
    client = await sw.raw_client()
    assert len(node.connect_deadlines) == 1
    await client.ws.close()
    for _ in range(200):
        if not node.connections:
            break
        await asyncio.sleep(0.01)
    assert not node.connections and len(node.connect_deadlines) == 0


async def test_commands_in_the_connect_frame_run_after_it(stagewire):
    token = await stagewire.token("alice")
    client = await stagewire.raw_client()
    await client.send_raw('{"id":1,"type":"connect","token":"%s"}\n{"id":2,"type":"subscribe","channel":"chat:a"}' % token)
    assert "client" in (await client.reply(1))["result"]
    assert (await client.reply(2))["result"]["offset"] == 0


async def test_malformed_input_gets_coded_errors_and_the_connection_lives(stagewire):
    client = await stagewire.client("alice")
    other = await stagewire.client("bob")
    await other.result("subscribe", channel="chat:x")
    await client.send_raw("{not json")
    assert (await client.recv_push("error"))["error"]["code"] == 107
    await client.send_raw(b"\x00\x01 binary on a json connection")
    assert (await client.recv_push("error"))["error"]["code"] == 107
    await client.send_raw('{"id": "one", "type": "ping"}')
    assert (await client.recv_push("error"))["error"]["code"] == 107
    await client.send_raw('{"id": 99}')
    assert (await client.reply(99))["error"]["code"] == 107
    await client.assert_error(104, "no_such_command")
    error = await client.assert_error(107, "subscribe", channel=5)
    assert "channel" in error["fields"]
    await client.assert_error(107, "subscribe")
    await client.assert_error(107, "publish", channel="chat:x")
    await client.assert_error(107, "subscribe", channel="no-namespace")
    await client.assert_error(107, "connect", token="again")
    assert "traceback" not in str(error).lower()
    # Neither this connection nor the other one was hurt.
    assert await client.result("publish", channel="chat:x", data={"still": "alive"})
    assert (await other.recv_push("pub"))["data"] == {"still": "alive"}


async def test_malformed_msgpack_gets_an_error(stagewire):
    client = await stagewire.client("alice", subprotocol="stagewire.msgpack")
    await client.send_raw(b"\xc1\xc1")
    assert (await client.recv_push("error"))["error"]["code"] == 107
    await client.send_raw("text on a msgpack connection")
    assert (await client.recv_push("error"))["error"]["code"] == 107
    await client.assert_error(107, "publish", channel="chat:x", data=b"\x00binary")
    error = await client.assert_error(107, "publish", channel="chat:x", data={1: "int key"})
    assert "data" in error["fields"]
    assert await client.result("ping") == {}


async def test_message_too_big_closes_with_1009(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"max_message_size": 1024}))
    client = await sw.client("alice")
    other = await sw.client("bob")
    await client.send("publish", channel="chat:x", data="x" * 2000)
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == 1009 and push["reconnect"] is False
    assert await other.result("ping") == {}


async def test_rate_limit_refuses_then_disconnects_a_flood(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"command_rate": 0.001, "command_burst": 5}))
    client = await sw.client("alice")
    for _ in range(5):
        assert await client.result("ping") == {}
    error = await client.assert_error(111, "ping")
    assert error["temporary"] is True
    for _ in range(5):
        await client.send("ping")
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == 4004 and push["reconnect"] is True


@pytest.mark.parametrize("origin,allowed", [
    ("https://evil.example", False),
    ("http://localhost:8080", True),
    (None, True),
])
async def test_origin_is_checked_on_upgrade(make_stagewire, tmp_path, origin, allowed):
    sw = await make_stagewire(make_settings(tmp_path, server={"allowed_origins": ["http://localhost:8080"]}))
    kwargs = {"origin": origin} if origin else {}
    if allowed:
        client = await connect_ws(sw.ws_url, **kwargs)
        await client.close()
    else:
        with pytest.raises(websockets.InvalidStatus) as exc:
            await connect_ws(sw.ws_url, **kwargs)
        assert exc.value.response.status_code == 403


async def test_same_origin_is_always_allowed(stagewire):
    client = await connect_ws(stagewire.ws_url, origin=stagewire.url)
    await client.close()


async def test_dead_peer_is_dropped_by_the_heartbeat(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"ping_interval": 0.3}))
    client = await sw.client("alice", ping_interval=None)
    node = sw.app[NODE]
    assert len(node.connections) == 1
    # The client stops reading: it no longer answers WebSocket pings.
    client.ws.transport.pause_reading()
    for _ in range(100):
        if not node.connections:
            break
        await asyncio.sleep(0.05)
    assert not node.connections, "a peer that does not answer pings must be dropped"
    client.ws.transport.abort()


async def test_the_kernel_holds_at_most_socket_unsent_limit_of_a_client(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"socket_unsent_limit": 32768}))
    await sw.client("alice")
    (conn,) = sw.app[NODE].connections_of("alice")
    sock = conn.writer._transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25)) == 32768


async def test_a_slow_client_with_a_backed_up_socket_is_aborted_at_once(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"write_buffer_limit": 256 * 1024}))
    node = sw.app[NODE]
    slow = await sw.client("alice")
    fast = await sw.client("bob")
    await slow.result("subscribe", channel="news:flood")
    (conn,) = node.connections_of("alice")
    transport = conn.writer._transport
    slow.ws.transport.pause_reading()  # it stopped reading
    for i in range(400):
        status, _ = await sw.api("POST", "/api/publish", {"channel": "news:flood", "data": "x" * 60_000})
        assert status == 200
        if node.counters.slow_disconnects:
            break
    assert node.counters.slow_disconnects == 1
    # No close handshake waits behind what it did not read: aborted within a loop
    # iteration or two of the cut-off, its buffers are gone.
    for _ in range(10):
        if transport.is_closing():
            break
        await asyncio.sleep(0)
    assert transport.is_closing() and transport.get_write_buffer_size() == 0
    for _ in range(100):
        if not node.connections_of("alice"):
            break
        await asyncio.sleep(0.01)
    assert not node.connections_of("alice")
    assert await fast.result("ping") == {}  # and nobody else noticed
    slow.ws.transport.abort()


async def test_a_peer_that_answers_pings_stays_through_many_heartbeats(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"ping_interval": 0.2}))
    client = await sw.client("alice", ping_interval=None)  # idle: it only answers the server's pings
    node = sw.app[NODE]
    await asyncio.sleep(1.5)  # seven heartbeats
    assert len(node.connections) == 1
    assert await client.result("ping") == {}


async def test_a_client_ping_is_answered_before_and_after_connect(stagewire):
    client = await connect_ws(stagewire.ws_url)
    await asyncio.wait_for(await client.ws.ping(b"before"), 5)
    assert "result" in await client.call("connect", token=await stagewire.token("alice"))
    await asyncio.wait_for(await client.ws.ping(b"after"), 5)
    await client.close()


async def test_app_level_pings_are_pushed(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, client={"ping_interval": 0.2}))
    client = await sw.client("alice")
    assert await client.recv() == {"type": "ping"}


async def test_nothing_is_left_behind_when_clients_go(stagewire):
    node = stagewire.app[NODE]
    clients = [await stagewire.client(f"user{i % 3}") for i in range(12)]
    for i, client in enumerate(clients):
        await client.result("subscribe", channel=f"chat:room{i % 4}")
    for client in clients:
        await client.close()
    for _ in range(200):
        if not node.connections and not dict(node.hub.channels()) and not node.held_channels():
            break
        await asyncio.sleep(0.02)
    assert node.connections == {}
    assert dict(node.hub.channels()) == {} and node.held_channels() == set()
    assert node.user_count() == 0 and node.connections_of("user0") == set()
    for i in range(4):
        assert await node.presence.store.stats(f"chat:room{i}") == (0, 0)


NASTY_FRAMES = [
    '{"id": 1, "type": "publish", "channel": "chat:x", "data": 123456789012345678901234567890}',
    "[" * 5000 + "]" * 5000,
    '{"id": 2, "type": "publish", "channel": "chat:x", "data": ' + "[" * 3000 + "]" * 3000 + "}",
    '{"id": 3, "type": "subscribe", "channel": "chat:\\u0000"}',
    '{"id": 4, "type": "subscribe", "channel": "' + "a" * 10000 + ':b"}',
    '{"id": 9007199254740992, "type": "ping"}',
    '{"id": 5, "type": "publish", "channel": ["chat:x"], "data": 1}',
    '{"id": 6, "type": "history", "channel": "chat:x", "since": {"offset": -1, "epoch": 5}}',
    '{"id": 7, "type": "subscribe", "channel": "chat:x", "recover": "yes"}',
    '{"id": 8, "type": "refresh", "token": null}',
    "\ufeff{}",
    "null",
]


async def test_nasty_input_never_breaks_the_connection(stagewire):
    client = await stagewire.client("alice")
    for frame in NASTY_FRAMES:
        await client.send_raw(frame)
        assert await client.result("ping") == {}, frame
    # Every nasty frame got an answer: a result, or a coded error (reply or push).
    answers = [m for m in client.pending() if m.get("type") != "ping"]
    assert len(answers) == len(NASTY_FRAMES), answers
    assert all("result" in m or isinstance(m.get("error", {}).get("code"), int) for m in answers), answers


async def test_handshakes_over_the_admission_limit_are_told_to_try_again_before_the_upgrade(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, server={"max_handshakes": 2}))
    token = await sw.token("alice")
    waiting = [await sw.raw_client(), await sw.raw_client()]  # upgraded, no connect yet: 2 in progress
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with sw.http.get(sw.url + "/ws", headers=upgrade) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert await r.json() == {"try_again": 1000}
    assert sw.app[NODE].counters.connects_deferred == 1
    assert "result" in await waiting[0].call("connect", token=token)  # one handshake done: room for one
    third = await sw.client(token=token)
    assert await third.result("ping") == {}
    await waiting[1].close()  # a handshake given up frees its place too
    for _ in range(100):
        if sw.app[NODE].handshaking == 0:
            break
        await asyncio.sleep(0.01)
    assert sw.app[NODE].handshaking == 0


async def test_connections_from_one_address_share_its_string(stagewire):
    for _ in range(3):
        await stagewire.client("alice")
    remotes = [conn.remote for conn in stagewire.app[NODE].connections_of("alice")]
    assert remotes[0] == "127.0.0.1"
    assert all(remote is remotes[0] for remote in remotes)
