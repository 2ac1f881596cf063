"""Two server processes, one Redis: one login limit and one idempotency window for both."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import PASSWORD, channel_name

pytestmark = pytest.mark.redis

DURABLE = {"STAGEWIRE_NAMESPACES__LOG__PUBLISH": "client", "STAGEWIRE_NAMESPACES__LOG__PERSIST": "true"}


async def login(server, username: str, password: str) -> int:
    body = {"username": username, "password": password}
    async with server.cluster.http.post(f"{server.url}/api/auth/login", json=body) as r:
        return r.status


async def test_guesses_spread_over_both_servers_hit_one_limit(cluster):
    a, b = await cluster.pair(env={"STAGEWIRE_AUTH__LOGIN_MAX_FAILURES": "4"})
    await cluster.token("victim")  # registered (and its one login forgiven)

    statuses = [await login((a, b)[i % 2], "victim", f"guess{i}") for i in range(4)]
    assert statuses == [401] * 4
    # The fifth guess is refused on either server, and so is the right password now.
    assert await login(a, "victim", "guess4") == 429
    assert await login(b, "victim", "guess5") == 429
    assert await login(b, "victim", PASSWORD) == 429
    async with cluster.http.post(f"{a.url}/api/auth/login",
                                 json={"username": "victim", "password": PASSWORD}) as r:
        assert r.status == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 300


@pytest.mark.parametrize("namespace", ["team", "log"], ids=["broker", "durable"])
async def test_one_idempotency_key_on_both_servers_makes_one_publication(cluster, namespace):
    a, b = await cluster.pair(env=DURABLE)
    channel = channel_name("idem").replace("team:", f"{namespace}:")
    subscriber = await a.client("sub")
    await subscriber.result("subscribe", channel=channel)
    if namespace == "team":
        await subscriber.recv_push("join", channel=channel, info={"user": "sub"})
    publisher = await a.client("pub")

    first = await publisher.result("publish", channel=channel, data="once", idempotency_key="order-7")
    status, again = await b.api("POST", "/api/publish",
                                {"channel": channel, "data": "twice", "idempotency_key": "order-7"})
    assert status == 200, again
    assert (again["offset"], again["epoch"]) == (first["offset"], first["epoch"])
    on_b = await (await b.client("pub2")).result("publish", channel=channel, data="thrice", idempotency_key="order-7")
    assert (on_b["offset"], on_b["epoch"]) == (first["offset"], first["epoch"])

    status, other = await b.api("POST", "/api/publish", {"channel": channel, "data": "next", "idempotency_key": "order-8"})
    assert status == 200 and other["offset"] == first["offset"] + 1
    pushes = [await subscriber.recv_push("pub", channel=channel) for _ in range(2)]
    assert [(p["offset"], p["data"]) for p in pushes] == [(first["offset"], "once"), (other["offset"], "next")]
    await subscriber.assert_quiet()
