"""One of two servers SIGKILLed: its clients move to the other one and miss nothing."""

from __future__ import annotations

import pytest
import websockets

from tests.cluster.conftest import channel_name

pytestmark = pytest.mark.redis

DURABLE = {"STAGEWIRE_NAMESPACES__LOG__PUBLISH": "client", "STAGEWIRE_NAMESPACES__LOG__PERSIST": "true"}


async def test_the_clients_of_a_killed_server_recover_everything_on_the_other(cluster):
    a, b = await cluster.pair(env=DURABLE)
    live = channel_name("failover")
    durable = live.replace("team:", "log:")
    mover, publisher = await a.client("mover"), await b.client("publisher")
    positions = {}
    for channel in (live, durable):
        await mover.result("subscribe", channel=channel)
        reply = await publisher.result("publish", channel=channel, data="before")
        pub = await mover.recv_push("pub", channel=channel)
        assert pub["offset"] == reply["offset"]
        positions[channel] = (reply["offset"], reply["epoch"])

    await a.kill()
    with pytest.raises(websockets.ConnectionClosed):  # the socket is reset: the client knows at once
        while True:
            await mover.recv(timeout=10)  # what was pending (its joins), then the end
    missed = {channel: [(await publisher.result("publish", channel=channel, data=n))["offset"] for n in (1, 2)]
              for channel in (live, durable)}

    moved = await b.client("mover")  # the next server of its list
    for channel, (offset, epoch) in positions.items():
        recovery = await moved.result("subscribe", channel=channel, recover=True, offset=offset, epoch=epoch)
        assert recovery["recovered"] is True
        assert [p["offset"] for p in recovery["publications"]] == missed[channel]
        assert [p["data"] for p in recovery["publications"]] == [1, 2]
        after = await publisher.result("publish", channel=channel, data="after")
        assert (await moved.recv_push("pub", channel=channel))["offset"] == after["offset"] == missed[channel][-1] + 1
