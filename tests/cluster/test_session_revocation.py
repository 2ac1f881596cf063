"""Sessions revoked on one server are refused by the other, whose session cache answered connects."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tests.cluster.conftest import PASSWORD
from tests.cluster.test_redis_outages import kill_connections
from tests.helpers import connect_ws

pytestmark = pytest.mark.redis


async def login(server, username: str) -> str:
    body = {"username": username, "password": PASSWORD}
    async with server.cluster.http.post(f"{server.url}/api/auth/register", json=body) as r:
        assert r.status in (201, 409), await r.text()
    async with server.cluster.http.post(f"{server.url}/api/auth/login", json=body) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["token"]


async def connect(server, token: str):
    client = await connect_ws(server.ws_url, close_timeout=1)
    server.cluster.clients.append(client)
    return client, await client.call("connect", token=token)


async def assert_refused(server, token: str) -> None:
    """``connect`` with ``token`` gets error 101 and the close code 4501 (unauthorized, final)."""
    client, reply = await connect(server, token)
    assert reply["error"]["code"] == 101, reply
    push, close_code = await client.recv_disconnect()
    assert push["code"] == close_code == 4501 and push["reconnect"] is False


async def test_a_token_logged_out_on_one_server_is_refused_on_the_other(cluster):
    a, b = await cluster.pair()
    token = await login(a, "alice")
    other_token = await login(a, "alice")  # a second session of the same user
    # B answers these from its cache once it has seen them.
    on_b, reply = await connect(b, token)
    assert "result" in reply, reply
    other_on_b, reply = await connect(b, other_token)
    assert "result" in reply, reply

    async with cluster.http.post(f"{a.url}/api/auth/logout", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200

    push, close_code = await on_b.recv_disconnect()  # the open connection on B is closed ...
    assert push["code"] == close_code == 4503 and push["reconnect"] is False
    await assert_refused(b, token)  # ... and B's cache no longer believes the session
    await assert_refused(a, token)
    assert await other_on_b.result("ping") == {}  # the other session lives on
    _, reply = await connect(b, other_token)
    assert "result" in reply, reply


async def test_a_server_whose_redis_connection_was_lost_forgets_every_cached_session(cluster, redis):
    a, b = await cluster.pair()
    token = await login(a, "alice")
    _, reply = await connect(b, token)
    assert "result" in reply, reply
    # Revoked in the database with no control message, as if B had missed it.
    db = sqlite3.connect(cluster.tmp_path / "cluster.sqlite3")
    with db:
        db.execute("UPDATE auth_sessions SET revoked_at = CURRENT_TIMESTAMP")
    db.close()
    _, reply = await connect(b, token)
    assert "result" in reply, reply  # B's cache still believes it (for up to session_cache_ttl)

    killed = await kill_connections(redis, f"stagewire-{cluster.prefix}")  # both servers' connections
    assert sum("P" in c["flags"] for c in killed) >= 2
    for _ in range(200):  # B's pub/sub reconnects and says what it may have missed
        if "control messages may have been missed" in b.log_text():
            break
        await asyncio.sleep(0.05)
    await b.ready_nodes(1)  # healthy again: the cache is in use again, and empty
    await assert_refused(b, token)
