"""The Redis login limiter: one limit for every node, atomic under parallel guesses.

Each limiter here has a Redis client of its own, as each node has, and they
share the test's key prefix, as the nodes of one deployment do.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import pytest

from server.auth.limiter import TooManyAttempts
from server.auth.limiter_redis import RedisLoginLimiter
from server.broker.redis_client import RedisClient
from server.config import BrokerSettings
from server.errors import BrokerUnavailable
from tests.redis_support import admin, prefix, redis_url, socket_nobody_listens_on  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
async def make_limiter(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., RedisLoginLimiter]]:
    clients: list[RedisClient] = []

    def make(max_failures: int, window: float, **overrides: Any) -> RedisLoginLimiter:
        settings = BrokerSettings(**{"backend": "redis", "redis_url": redis_url, "prefix": prefix, **overrides})
        clients.append(RedisClient(settings))
        return RedisLoginLimiter(clients[-1], max_failures, window)

    yield make
    await asyncio.gather(*(client.close() for client in clients))


async def test_failures_on_any_node_count_against_one_limit(make_limiter):
    nodes = [make_limiter(3, 60) for _ in range(3)]
    for node in nodes:
        await node.acquire("1.1.1.1", "alice")
    for node in nodes:
        with pytest.raises(TooManyAttempts) as exc_info:
            await node.acquire("2.2.2.2", "alice")
        assert 59 <= exc_info.value.retry_after <= 60


async def test_parallel_guesses_on_two_nodes_let_exactly_the_limit_through(make_limiter):
    a, b = make_limiter(5, 60), make_limiter(5, 60)
    results = await asyncio.gather(
        *((a if i % 2 else b).acquire(f"10.0.0.{i}", "alice") for i in range(40)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 5
    assert all(isinstance(r, TooManyAttempts) for r in results if r is not None)


async def test_the_ip_limit_spans_usernames_and_a_refusal_does_not_count(make_limiter, redis_url, prefix):
    a, b = make_limiter(2, 60), make_limiter(2, 60)
    await a.acquire("1.1.1.1", "a")
    await b.acquire("1.1.1.1", "b")
    with pytest.raises(TooManyAttempts):
        await a.acquire("1.1.1.1", "c")
    # "c" was refused by its IP, so it has no failure of its own: it may fail twice elsewhere.
    await b.acquire("2.2.2.2", "c")
    await b.acquire("3.3.3.3", "c")
    with pytest.raises(TooManyAttempts):
        await a.acquire("4.4.4.4", "c")


async def test_a_success_forgives_the_username_and_one_failure_of_the_ip(make_limiter):
    a, b = make_limiter(2, 60), make_limiter(2, 60)
    await a.acquire("1.1.1.1", "alice")
    await a.acquire("1.1.1.1", "alice")
    await b.succeeded("1.1.1.1", "alice")
    await b.acquire("1.1.1.1", "alice")  # one failure left on the IP, none on the name
    with pytest.raises(TooManyAttempts):
        await a.acquire("1.1.1.1", "bob")


async def test_failures_expire_after_the_window_and_leave_no_keys(make_limiter, redis_url, prefix):
    limiter = make_limiter(1, 0.3)
    await limiter.acquire(None, "alice")
    with pytest.raises(TooManyAttempts):
        await limiter.acquire(None, "alice")
    async with admin(redis_url) as client:
        [key] = [k async for k in client.scan_iter(match=f"{prefix}.login.*")]
        assert key == f"{prefix}.login.{{user:alice}}".encode()
        assert 0 < await client.pttl(key) <= 300
        await asyncio.sleep(0.35)
        await limiter.acquire(None, "alice")
        await asyncio.sleep(0.35)
        assert [k async for k in client.scan_iter(match=f"{prefix}.login.*")] == []


async def test_with_redis_unreachable_a_login_is_refused_not_let_through(make_limiter):
    with socket_nobody_listens_on() as port:
        limiter = make_limiter(3, 60, redis_url=f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
        with pytest.raises(BrokerUnavailable):
            await limiter.acquire("1.1.1.1", "alice")
