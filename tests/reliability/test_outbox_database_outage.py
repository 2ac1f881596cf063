"""The webhook outbox while its database is stopped: events wait, then arrive once, in order."""

from __future__ import annotations

import asyncio

from tests.conftest import NAMESPACES, make_settings
from tests.hooks.conftest import SECRET
from tests.hooks.receiver import Receiver
from tests.private_postgres import PrivatePostgres, private_postgres  # noqa: F401

COUNT = 30


async def test_events_made_while_the_database_is_down_are_delivered_once_it_is_back(
    make_stagewire, tmp_path, private_postgres: PrivatePostgres
):
    receiver = await Receiver(SECRET).start()
    settings = make_settings(
        tmp_path,
        database={"url": private_postgres.url},
        hooks={"retry_min_delay": 0.1, "retry_max_delay": 0.5, "max_attempts": 1000, "poll_interval": 0.2},
        webhooks=[{"url": receiver.url, "events": ["publish"], "channels": ["chat"], "secret": SECRET}],
        namespaces=NAMESPACES,
    )
    sw = await make_stagewire(settings)
    alice = await sw.client("alice")
    try:
        await alice.result("publish", channel="chat:outbox", data=0)
        await receiver.wait_for(lambda events: len(events) == 1, timeout=10, what="the first event")
        await private_postgres.stop()
        # chat is not a durable namespace: publishing goes on; its events wait for the outbox.
        offsets = [(await alice.result("publish", channel="chat:outbox", data=i))["offset"] for i in range(1, COUNT)]
        await asyncio.sleep(0.5)
        assert len(receiver.events) == 1, "nothing can be sent before it is stored"
        await private_postgres.start()
        await receiver.wait_for(lambda events: len(events) >= COUNT, timeout=30, what=f"all {COUNT} events")
        await asyncio.sleep(0.5)  # a duplicate would arrive in the meantime
    finally:
        await receiver.stop()
    events = receiver.events
    assert [e["offset"] for e in events] == [1, *offsets], "each once, in order"
    assert [e["data"] for e in events] == list(range(COUNT))
    assert all(post["verified"] for post in receiver.posts)
