"""The proxies against a real backend: allow, refuse, timeout and a 500, each as the client sees it."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.hooks import signing
from tests.conftest import make_settings
from tests.hooks.backend import Backend
from tests.helpers import connect_ws

TIMEOUT = 0.5
USER = {"id": "u42", "name": "Alice", "roles": ["admin", "editor"]}


@pytest.fixture
async def backend():
    backend = await Backend().start()
    yield backend
    await backend.stop()


def proxy_settings(tmp_path, backend: Backend, **proxy):
    options = {kind: backend.url(kind) for kind in ("connect", "refresh", "subscribe", "publish", "rpc")}
    namespaces = {
        "chat": {"subscribe": "authenticated", "publish": "client"},
        "news": {"subscribe": "authenticated", "publish": "client", "subscribe_proxy": "off", "publish_proxy": "off"},
        "room": {"subscribe": "authenticated", "publish": "client", "subscribe_proxy": backend.url("room-subscribe")},
        "user": {"subscribe": "owner", "publish": "server"},
    }
    return make_settings(tmp_path, proxy={**options, "timeout": TIMEOUT, **proxy}, namespaces=namespaces)


async def proxied_client(sw, cookie: str = "session=s1", **connect):
    client = await connect_ws(sw.ws_url, additional_headers={"Cookie": cookie, "X-Not-Forwarded": "1"})
    sw._clients.append(client)
    reply = await client.call("connect", **connect)
    return client, reply


async def assert_closed(client, code: int) -> None:
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == code


# -- connect ---------------------------------------------------------------------------


async def test_connect_proxy_allows_with_the_forwarded_cookie(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER, "channels": ["chat:auto", "nope:x"]})
    sw = await make_stagewire(proxy_settings(tmp_path, backend))
    client, reply = await proxied_client(sw, data={"device": "phone"})
    result = reply["result"]
    assert result["user"] == {"id": "u42", "username": "u42", "role": "admin", "name": "Alice",
                              "roles": ["admin", "editor"]}
    assert result["expires_in"] == 0  # the backend gave no expiry: the connection does not expire
    assert result["subscriptions"]["chat:auto"]["offset"] == 0
    assert result["subscriptions"]["nope:x"]["error"]["code"] == 102
    [call] = backend.calls_to("connect")
    assert call["headers"]["Cookie"] == "session=s1" and "X-Not-Forwarded" not in call["headers"]
    body = call["body"]
    assert (body["client"], body["transport"], body["encoding"], body["data"]) == (
        result["client"], "websocket", "json", {"device": "phone"})
    assert body["remote"] == "127.0.0.1" and isinstance(body["time_ms"], int)
    assert signing.HEADER not in call["headers"]  # no [proxy] secret: unsigned
    # The server-side subscription is live right after the reply.
    status, _ = await sw.api("POST", "/api/publish", {"channel": "chat:auto", "data": "hello"})
    assert status == 200
    push = await client.recv_push("pub", channel="chat:auto")
    assert push["data"] == "hello"
    # The user is known by the backend's id everywhere (owner channels included).
    assert "result" in await client.call("subscribe", channel="user:u42")


@pytest.mark.parametrize("status", [200, 401, 403])
async def test_connect_proxy_refusal_is_unauthorized_and_final(make_stagewire, tmp_path, backend, status):
    backend.refuse("connect", "no session", status=status)
    sw = await make_stagewire(proxy_settings(tmp_path, backend))
    client, reply = await proxied_client(sw)
    assert reply["error"]["code"] == 101
    assert reply["error"]["message"] == "no session"
    await assert_closed(client, 4501)


@pytest.mark.parametrize("failure", ["timeout", "500", "garbage"])
async def test_connect_proxy_failure_is_unavailable_at_once_and_worth_a_reconnect(
        make_stagewire, tmp_path, backend, failure):
    if failure == "timeout":
        backend.hang("connect")
    elif failure == "500":
        backend.fail("connect", 500)
    else:
        backend.answer("connect", lambda body: (200, {"result": {"user": {"id": "has space"}}}))
    sw = await make_stagewire(proxy_settings(tmp_path, backend))
    started = time.monotonic()
    client, reply = await proxied_client(sw)
    assert time.monotonic() - started < TIMEOUT + 2  # never a hang
    assert reply["error"]["code"] == 112 and reply["error"]["temporary"] is True
    push, code = await client.recv_disconnect()
    assert push["code"] == code == 4007 and push["reconnect"] is True


async def test_own_tokens_work_beside_the_connect_proxy_unless_turned_off(make_stagewire, tmp_path, backend):
    sw = await make_stagewire(proxy_settings(tmp_path, backend))
    alice = await sw.client("alice")
    assert alice.connect_result["user"]["username"] == "alice"
    assert backend.calls_to("connect") == []
    strict = await make_stagewire(proxy_settings(tmp_path / "strict", backend, tokens=False))
    client = await strict.raw_client()
    reply = await client.call("connect", token=await sw.token("bob"))
    assert reply["error"]["code"] == 101
    await assert_closed(client, 4501)


async def test_without_a_connect_proxy_a_token_is_required(make_stagewire, tmp_path, backend):
    sw = await make_stagewire(make_settings(tmp_path))
    client = await sw.raw_client()
    reply = await client.call("connect")
    assert reply["error"]["code"] == 101 and reply["error"]["fields"] == {"token": "required"}
    await assert_closed(client, 4501)


# -- subscribe and publish ------------------------------------------------------------------


async def test_subscribe_proxy_allows_refuses_and_fails_per_channel(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER})
    sw = await make_stagewire(proxy_settings(tmp_path, backend))
    client, _ = await proxied_client(sw)

    backend.result("subscribe", {})
    assert "result" in await client.call("subscribe", channel="chat:ok")
    [call] = backend.calls_to("subscribe")
    assert (call["body"]["channel"], call["body"]["user"]) == ("chat:ok", "u42")
    assert call["headers"]["Cookie"] == "session=s1"  # the connection's headers go with every call

    backend.refuse("subscribe", "not in this team")
    error = await client.assert_error(103, "subscribe", channel="chat:no")
    assert error["message"] == "not in this team"
    backend.fail("subscribe", 500)
    await client.assert_error(112, "subscribe", channel="chat:boom")
    backend.hang("subscribe")
    started = time.monotonic()
    error = await client.assert_error(112, "subscribe", channel="chat:slow")
    assert time.monotonic() - started < TIMEOUT + 2 and error["temporary"] is True

    # A namespace with its own proxy asks it; one with "off" asks nobody.
    calls = len(backend.calls)
    assert "result" in await client.call("subscribe", channel="news:free")
    assert len(backend.calls) == calls
    backend.refuse("room-subscribe", "room closed")
    error = await client.assert_error(103, "subscribe", channel="room:1")
    assert error["message"] == "room closed"
    # The connection is fine after all of it.
    assert "result" in await client.call("ping")


async def test_publish_proxy_allows_replaces_refuses_and_fails(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER})
    sw = await make_stagewire(proxy_settings(tmp_path, backend, subscribe=""))
    client, _ = await proxied_client(sw)
    await client.result("subscribe", channel="chat:pub")

    backend.result("publish", {})
    assert (await client.result("publish", channel="chat:pub", data={"text": "as is"}))["offset"] == 1
    assert (await client.recv_push("pub", channel="chat:pub"))["data"] == {"text": "as is"}
    assert backend.calls_to("publish")[-1]["body"]["data"] == {"text": "as is"}

    backend.answer("publish", lambda body: (200, {"result": {"data": {"text": body["data"]["text"].upper()}}}))
    assert (await client.result("publish", channel="chat:pub", data={"text": "shout"}))["offset"] == 2
    assert (await client.recv_push("pub", channel="chat:pub"))["data"] == {"text": "SHOUT"}

    backend.refuse("publish", "spam")
    assert (await client.assert_error(103, "publish", channel="chat:pub", data="buy now"))["message"] == "spam"
    backend.fail("publish", 502)
    await client.assert_error(112, "publish", channel="chat:pub", data="x")
    backend.hang("publish")
    await client.assert_error(112, "publish", channel="chat:pub", data="y")
    # Nothing refused or failed was published.
    history = await client.result("history", channel="chat:pub")
    assert [p["data"] for p in history["publications"]] == [{"text": "as is"}, {"text": "SHOUT"}]


# -- rpc --------------------------------------------------------------------------------------


async def test_rpc_proxy_answers_and_its_errors(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER})
    sw = await make_stagewire(proxy_settings(tmp_path, backend))
    client, _ = await proxied_client(sw)

    backend.answer("rpc", lambda body: (200, {"result": {"data": {"echo": body["data"], "m": body["method"]}}}))
    assert await client.result("rpc", method="orders.list", data={"page": 2}) == {
        "data": {"echo": {"page": 2}, "m": "orders.list"}}
    assert backend.calls_to("rpc")[-1]["body"]["user"] == "u42"

    backend.answer("rpc", lambda body: (200, {"error": {"code": 1404, "message": "no such order"}}))
    error = await client.assert_error(1404, "rpc", method="orders.get", data=7)
    assert error == {"code": 1404, "message": "no such order"}
    backend.answer("rpc", lambda body: (200, {"error": {"code": 7, "message": "not yours"}}))
    await client.assert_error(103, "rpc", method="orders.get")  # codes outside 1000-1999 are not the backend's
    backend.fail("rpc", 500)
    await client.assert_error(112, "rpc", method="orders.list")
    backend.hang("rpc")
    await client.assert_error(112, "rpc", method="orders.list")
    await client.assert_error(107, "rpc", data=1)  # no method


async def test_rpc_without_a_backend_is_method_not_found(stagewire):
    alice = await stagewire.client("alice")
    await alice.assert_error(104, "rpc", method="anything")


# -- refresh --------------------------------------------------------------------------------


async def test_refresh_proxy_keeps_a_connection_alive_then_ends_it(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER, "expires_in": 1.5})
    backend.result("refresh", {"expires_in": 1.5})
    sw = await make_stagewire(proxy_settings(tmp_path, backend, refresh_ahead=0.7))
    client, reply = await proxied_client(sw)
    assert reply["result"]["expires_in"] == 1
    await asyncio.sleep(2.5)  # past the first expiry: refreshed in time
    assert "result" in await client.call("ping")
    assert len(backend.calls_to("refresh")) >= 2
    assert backend.calls_to("refresh")[0]["headers"]["Cookie"] == "session=s1"

    # The client may ask too: no token, the refresh proxy answers.
    backend.result("refresh", {"expires_in": 30})
    assert (await client.result("refresh"))["expires_in"] in (29, 30)
    backend.refuse("refresh", "logged out", status=401)
    assert (await client.assert_error(109, "refresh"))["message"] == "logged out"


async def test_refresh_proxy_refusal_closes_with_token_expired(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER, "expires_in": 1.0})
    backend.refuse("refresh", "logged out")
    sw = await make_stagewire(proxy_settings(tmp_path, backend, refresh_ahead=0.5))
    client, _ = await proxied_client(sw)
    await assert_closed(client, 4003)


# -- the HTTP side --------------------------------------------------------------------------


async def test_calls_are_signed_pooled_and_counted(make_stagewire, tmp_path, backend):
    backend.result("connect", {"user": USER})
    backend.result("rpc", {"data": 1})
    sw = await make_stagewire(proxy_settings(tmp_path, backend, secret="proxy-secret"))
    client, _ = await proxied_client(sw)
    for _ in range(20):
        await client.result("rpc", method="n")
    backend.hang("rpc")
    await client.assert_error(112, "rpc", method="slow")
    backend.fail("rpc", 503)
    await client.assert_error(112, "rpc", method="broken")

    for call in backend.calls:
        assert signing.verify("proxy-secret", call["raw"], call["headers"][signing.HEADER], call["body"]["time_ms"])
    # Keep-alive: twenty calls one after the other went over one or two connections, not twenty.
    ports = {call["peer_port"] for call in backend.calls_to("rpc")[:20]}
    assert len(ports) <= 2, ports
    async with sw.http.get(f"{sw.url}/metrics") as r:
        text = await r.text()
    assert 'stagewire_hook_requests_total{target="rpc"} 22.0' in text  # 20 answered, 1 timed out, 1 503
    assert 'stagewire_hook_failures_total{reason="timeout",target="rpc"} 1.0' in text
    assert 'stagewire_hook_failures_total{reason="status",target="rpc"} 1.0' in text
    assert 'stagewire_hook_latency_seconds_count{target="rpc"} 21.0' in text
    assert 'stagewire_hook_requests_total{target="connect"} 1.0' in text
