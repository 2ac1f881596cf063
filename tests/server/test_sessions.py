"""Token refresh without reconnecting, expiry, and logout reaching open connections."""

from __future__ import annotations

import time

from server.auth.tokens import TokenSigner
from tests.conftest import make_settings


async def test_refresh_renews_auth_without_reconnecting(stagewire):
    client = await stagewire.client("alice")
    await client.result("subscribe", channel="quiet:keep")
    fresh = await stagewire.login("alice")
    result = await client.result("refresh", token=fresh)
    assert 3590 <= result["expires_in"] <= 3600
    # Same connection, same subscriptions.
    status, _ = await stagewire.api("POST", "/api/publish", {"channel": "quiet:keep", "data": 1})
    assert status == 200 and (await client.recv_push("pub"))["data"] == 1


async def test_refresh_with_a_bad_or_foreign_token_is_refused_and_the_connection_stays(stagewire):
    client = await stagewire.client("alice")
    await client.assert_error(101, "refresh", token="garbage")
    await client.assert_error(103, "refresh", token=await stagewire.token("bob"))
    assert await client.result("ping") == {}


async def test_expired_token_disconnects_with_a_reconnect_code(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, auth={"token_ttl": 1}))
    client = await sw.client("alice")
    push, close_code = await client.recv_disconnect(timeout=5)
    assert push["code"] == close_code == 4003 and push["reconnect"] is True


async def test_refresh_moves_the_expiry(make_stagewire, tmp_path):
    settings = make_settings(tmp_path, auth={"token_ttl": 3})
    sw = await make_stagewire(settings)
    alice_token, bob_token = await sw.token("alice"), await sw.token("bob")
    # The same sessions' tokens, signed with the server's secret by a clock set
    # back 1.5 s: they expire 0.5-1.5 s from now, a token signed now 2-3 s from now.
    secrets, ttl = settings.auth.secrets, settings.auth.token_ttl
    signed_now = TokenSigner(secrets, ttl)
    signed_before = TokenSigner(secrets, ttl, clock=lambda: time.time() - 1.5)

    def aged(token: str) -> str:
        claims = signed_now.read(token)
        return signed_before.issue(claims.user_id, claims.session_id)[0]

    token = aged(alice_token)
    alice = await sw.client(token=token)
    bob = await sw.client(token=aged(bob_token))
    async with sw.http.post(f"{sw.url}/api/auth/refresh", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        fresh = (await r.json())["token"]
    assert signed_now.read(fresh).expires_at >= signed_now.read(token).expires_at + 1
    await alice.result("refresh", token=fresh)
    push, _ = await bob.recv_disconnect(timeout=5)
    assert push["code"] == 4003
    # bob's token (as old as alice's first one) has expired; alice is still connected.
    assert await alice.result("ping") == {}
    push, _ = await alice.recv_disconnect(timeout=5)
    assert push["code"] == 4003


async def test_logout_closes_open_connections_and_kills_the_token(stagewire):
    token = await stagewire.token("alice")
    client = await stagewire.client(token=token)
    other_session = await stagewire.client("alice")
    async with stagewire.http.post(f"{stagewire.url}/api/auth/logout", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == 4503 and push["reconnect"] is False
    # Another login of the same user is a different session and stays.
    assert await other_session.result("ping") == {}
    again = await stagewire.raw_client()
    await again.assert_error(101, "connect", token=token)
    async with stagewire.http.get(f"{stagewire.url}/api/me", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 401


async def test_a_password_change_closes_the_other_sessions_connections(stagewire):
    token = await stagewire.token("alice")
    mine = await stagewire.client(token=token)
    elsewhere = await stagewire.client("alice")  # another login: another session
    body = {"password": "correct horse", "new_password": "a brand new one"}
    async with stagewire.http.post(f"{stagewire.url}/api/auth/password", json=body,
                                   headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
    push, close_code = await elsewhere.recv_disconnect()
    assert push["code"] == close_code == 4503 and push["reason"] == "password changed"
    assert await mine.result("ping") == {}
