"""The Python client while the server's Redis is away: a subscribe refused as temporary is asked again."""

from __future__ import annotations

import asyncio

import pytest

from server.appkeys import NODE
from tests.client.helpers import next_pub
from tests.conftest import NAMESPACES, make_settings
from tests.private_redis import private_redis  # noqa: F401

pytestmark = pytest.mark.redis


async def test_a_subscription_refused_with_112_is_retried_until_the_broker_is_back(
    make_stagewire, tmp_path, private_redis, sdk
) -> None:
    settings = make_settings(
        tmp_path,
        broker={"backend": "redis", "redis_url": private_redis.url, "prefix": "sdk-outage", "socket_timeout": 0.5,
                "reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2, "ping_interval": 0.5},
        namespaces=NAMESPACES,
    )
    sw = await make_stagewire(settings)
    client = await sdk(sw, "alice", min_delay=0.05, max_delay=0.2)
    await private_redis.kill()
    node = sw.app[NODE]
    while node.broker.healthy:
        await asyncio.sleep(0.01)

    sub = client.subscribe("quiet:outage")
    await asyncio.sleep(0.5)  # several refusals with 112 meanwhile
    assert not sub.ended and "quiet:outage" in client.subscriptions, sub._error

    await private_redis.start()
    await asyncio.wait_for(sub, 10)
    status, body = await sw.api("POST", "/api/publish", {"channel": "quiet:outage", "data": "back"})
    assert status == 200, body
    assert (await next_pub(sub)).data == "back"
