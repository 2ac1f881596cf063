"""The server HTTP API: publish, broadcast, channels, disconnect, and its API keys."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path,method", [
    ("/api/publish", "POST"), ("/api/broadcast", "POST"), ("/api/channels", "GET"), ("/api/disconnect", "POST"),
])
@pytest.mark.parametrize("key", [None, "wrong-key", "test-api-key-but-longer"])
async def test_every_endpoint_needs_a_valid_api_key(stagewire, path, method, key):
    status, body = await stagewire.api(method, path, {}, key=key)
    assert status == 401 and body["error"]["code"] == 101


async def test_user_tokens_are_not_api_keys(stagewire):
    token = await stagewire.token("alice")
    status, _ = await stagewire.api("POST", "/api/publish", {"channel": "news:a", "data": 1}, key=token)
    assert status == 401


async def test_publish_reaches_subscribers_even_in_server_only_namespaces(stagewire):
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="news:main")
    status, body = await stagewire.api("POST", "/api/publish", {"channel": "news:main", "data": {"headline": "up"}})
    assert status == 200 and body["offset"] == 1 and body["epoch"]
    push = await alice.recv_push("pub")
    assert push == {"type": "pub", "channel": "news:main", "offset": 1, "data": {"headline": "up"}}


async def test_publish_errors(stagewire):
    status, body = await stagewire.api("POST", "/api/publish", {"channel": "nosuch:x", "data": 1})
    assert status == 404 and body["error"]["code"] == 102
    status, body = await stagewire.api("POST", "/api/publish", {"channel": "news:x"})
    assert status == 422 and "data" in body["error"]["fields"]
    status, body = await stagewire.api("POST", "/api/publish", {"channel": 3, "data": 1})
    assert status == 422 and "channel" in body["error"]["fields"]
    async with stagewire.http.post(f"{stagewire.url}/api/publish", data="{oops",
                                   headers={"Authorization": "Bearer test-api-key"}) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == 107


async def test_broadcast_reports_each_channel(stagewire):
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="news:a")
    await alice.result("subscribe", channel="news:b")
    status, body = await stagewire.api("POST", "/api/broadcast", {"channels": ["news:a", "news:b", "bad:c"], "data": "hello"})
    assert status == 200
    assert [r["channel"] for r in body["results"]] == ["news:a", "news:b", "bad:c"]
    assert body["results"][0]["offset"] == 1 and body["results"][2]["error"]["code"] == 102
    got = {(await alice.recv_push("pub"))["channel"] for _ in range(2)}
    assert got == {"news:a", "news:b"}


async def test_channels_lists_active_channels_with_counts(stagewire):
    alice = await stagewire.client("alice")
    bob = await stagewire.client("bob")
    await alice.result("subscribe", channel="quiet:one")
    await bob.result("subscribe", channel="quiet:one")
    await bob.result("subscribe", channel="quiet:two")
    status, body = await stagewire.api("GET", "/api/channels")
    assert status == 200
    assert body["channels"] == [{"channel": "quiet:one", "subscribers": 2}, {"channel": "quiet:two", "subscribers": 1}]
    await bob.close()
    await alice.assert_quiet()
    status, body = await stagewire.api("GET", "/api/channels")
    assert body["channels"] == [{"channel": "quiet:one", "subscribers": 1}]


async def test_disconnect_closes_every_connection_of_the_user(stagewire):
    alice1 = await stagewire.client("alice")
    alice2 = await stagewire.client("alice")
    bob = await stagewire.client("bob")
    status, _ = await stagewire.api("POST", "/api/disconnect", {"user": "alice"})
    assert status == 200
    for client in (alice1, alice2):
        push, code = await client.recv_disconnect()
        assert push["code"] == code == 4502 and push["reconnect"] is False
    assert await bob.result("ping") == {}


async def test_health_and_readiness(stagewire):
    async with stagewire.http.get(f"{stagewire.url}/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with stagewire.http.get(f"{stagewire.url}/readyz") as r:
        body = await r.json()
        assert r.status == 200 and body["checks"] == {"broker": True, "database": True, "accepting": True}


async def test_unknown_api_path_is_a_json_404(stagewire):
    async with stagewire.http.get(f"{stagewire.url}/api/nope") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == 113


async def test_the_console_page_is_served_at_the_root(make_stagewire, tmp_path):
    from pathlib import Path

    from tests.conftest import make_settings

    static = Path(__file__).resolve().parents[2] / "static"
    sw = await make_stagewire(make_settings(tmp_path, server={"static_dir": str(static)}))
    async with sw.http.get(f"{sw.url}/") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "Stagewire" in await r.text()
    async with sw.http.get(f"{sw.url}/static/index.html") as r:
        assert r.status == 200
