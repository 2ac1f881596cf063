"""Reconnect and recovery: what was missed comes first, in order, or ``recovered`` is False."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

import pytest
import websockets
from websockets.typing import Subprotocol
from stagewire_client import Client, CloseCode, ConnectInfo, Disconnected

from server.appkeys import NODE
from server.broker.base import StreamPosition
from server.errors import CloseCode as ServerCloseCode
from tests.client.helpers import eventually, next_pub, next_pubs
from tests.conftest import make_settings


async def publish(sw, channel, data):
    status, body = await sw.api("POST", "/api/publish", {"channel": channel, "data": data})
    assert status == 200, body
    return body


def drop(sw, client: Client, code: CloseCode = CloseCode.FORCE_RECONNECT) -> None:
    """Close the client's connection from the server side, and refuse new ones for now."""
    node = sw.app[NODE]
    assert client.info is not None
    # While shutting down the node answers /ws with 503: the client keeps
    # retrying, so the test decides when it may come back.
    node.shutting_down = True
    node.connections[client.info.client].close(ServerCloseCode(code), "test")


def let_back(sw) -> None:
    sw.app[NODE].shutting_down = False


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_missed_publications_are_recovered_in_order_before_live_ones(stagewire, sdk, encoding) -> None:
    connects: list[ConnectInfo] = []
    losses: list[Disconnected] = []
    recoveries: list[bool] = []
    client = await sdk(stagewire, "alice", encoding=encoding, min_delay=0.01, max_delay=0.05,
                       on_connect=connects.append, on_disconnect=losses.append)
    sub = await client.subscribe("news:feed", on_recovery=recoveries.append)
    await publish(stagewire, "news:feed", "seen")
    assert (await next_pub(sub)).data == "seen"
    epoch = sub.epoch

    drop(stagewire, client)
    await eventually(lambda: losses, "the disconnect")
    for i in range(3):
        await publish(stagewire, "news:feed", f"missed {i}")
    let_back(stagewire)
    await eventually(lambda: len(connects) == 2, "the reconnect")
    await publish(stagewire, "news:feed", "live")

    pubs = await next_pubs(sub, 4)
    assert [(p.offset, p.data) for p in pubs] == [(2, "missed 0"), (3, "missed 1"), (4, "missed 2"), (5, "live")]
    assert sub.recovered is True and recoveries == [True]
    assert sub.epoch == epoch
    assert [(d.code, d.reconnect) for d in losses] == [(CloseCode.FORCE_RECONNECT, True)]
    assert connects[0].client != connects[1].client


async def test_an_epoch_change_is_reported_as_not_recovered(stagewire, sdk) -> None:
    connects: list[ConnectInfo] = []
    recoveries: list[bool] = []
    client = await sdk(stagewire, "alice", min_delay=0.01, max_delay=0.05, on_connect=connects.append)
    sub = await client.subscribe("news:reset", on_recovery=recoveries.append)
    await publish(stagewire, "news:reset", "old")
    assert (await next_pub(sub)).offset == 1

    drop(stagewire, client, CloseCode.INSUFFICIENT_STATE)
    # The stream is reset while the client is away: new epoch, offsets restart.
    await stagewire.app[NODE].broker.restore_position("news:reset", StreamPosition(0, "new-epoch"))
    let_back(stagewire)
    await eventually(lambda: recoveries, "the recovery")
    assert recoveries == [False] and sub.recovered is False
    assert (sub.offset, sub.epoch) == (0, "new-epoch")

    await publish(stagewire, "news:reset", "new")
    pub = await next_pub(sub)
    assert (pub.offset, pub.data) == (1, "new")
    assert len(connects) == 2


async def test_a_gap_beyond_history_is_not_recovered(make_stagewire, tmp_path, sdk) -> None:
    from tests.conftest import make_settings

    sw = await make_stagewire(make_settings(tmp_path, namespaces={"small": {"publish": "server", "history_size": 2}}))
    recoveries: list[bool] = []
    client = await sdk(sw, "alice", min_delay=0.01, max_delay=0.05)
    sub = await client.subscribe("small:x", on_recovery=recoveries.append)
    drop(sw, client)
    for i in range(5):
        await publish(sw, "small:x", i)
    let_back(sw)
    await eventually(lambda: recoveries, "the recovery")
    assert recoveries == [False] and (sub.offset, sub.recovered) == (5, False)
    await publish(sw, "small:x", "after")
    assert (await next_pub(sub)).offset == 6


async def test_calls_wait_for_the_reconnect(stagewire, sdk) -> None:
    losses: list[Disconnected] = []
    client = await sdk(stagewire, "alice", min_delay=0.01, max_delay=0.05, on_disconnect=losses.append)
    drop(stagewire, client)
    await eventually(lambda: losses, "the disconnect")
    call = asyncio.create_task(client.publish("chat:wait", "queued"))
    await asyncio.sleep(0)
    assert not call.done()
    let_back(stagewire)
    position = await asyncio.wait_for(call, 5)
    assert position.offset == 1


async def test_an_expired_token_is_replaced_by_the_provider(stagewire, sdk) -> None:
    await stagewire.register("alice")
    tokens = []

    async def provider() -> str:
        tokens.append(await stagewire.login("alice"))
        return tokens[-1]

    connects: list[ConnectInfo] = []
    client = await sdk(stagewire, token=provider, min_delay=0.01, max_delay=0.05, on_connect=connects.append)
    sub = await client.subscribe("news:t")
    drop(stagewire, client, CloseCode.TOKEN_EXPIRED)
    let_back(stagewire)
    await eventually(lambda: len(connects) == 2, "the reconnect")
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    await publish(stagewire, "news:t", "ok")
    assert (await next_pub(sub)).data == "ok"


async def test_an_expired_fixed_token_ends_the_client(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice", min_delay=0.01)
    sub = await client.subscribe("news:t")
    drop(stagewire, client, CloseCode.TOKEN_EXPIRED)
    let_back(stagewire)
    with pytest.raises(Disconnected) as ended:
        await next_pub(sub)
    assert ended.value.code == CloseCode.TOKEN_EXPIRED and not ended.value.reconnect


async def test_reconnect_can_be_turned_off(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice", reconnect=False)
    sub = await client.subscribe("news:once")
    drop(stagewire, client)
    with pytest.raises(Disconnected) as ended:
        await next_pub(sub)
    assert ended.value.code == CloseCode.FORCE_RECONNECT and not ended.value.reconnect


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that accepts ``connect`` (``ping: 0.2``) and then never says anything."""
    connections: list[int] = []

    async def handler(ws) -> None:
        connections.append(1)
        command = json.loads(await ws.recv())
        result = {"client": f"c{len(connections)}", "user": {"username": "alice"}, "ping": 0.2,
                  "expires_in": 3600, "node": "silent"}
        await ws.send(json.dumps({"id": command["id"], "result": result}))
        await ws.wait_closed()

    async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol("stagewire.json")]) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws", connections


async def test_a_silent_server_is_dropped_after_ping_plus_grace(silent_server) -> None:
    url, connections = silent_server
    losses: list[Disconnected] = []
    async with Client(url, token="t", ping_grace=0.2, min_delay=0.01, max_delay=0.05,
                      on_disconnect=losses.append):
        await eventually(lambda: len(connections) >= 2, "a reconnect")
    assert losses[0].code == CloseCode.ABNORMAL and losses[0].reconnect
    assert "nothing from the server" in losses[0].reason


async def test_a_resubscribe_push_resubscribes_with_recover_on_the_same_connection(stagewire, sdk) -> None:
    connects: list[ConnectInfo] = []
    recoveries: list[bool] = []
    client = await sdk(stagewire, "alice", on_connect=connects.append)
    sub = await client.subscribe("news:blip", on_recovery=recoveries.append)
    await publish(stagewire, "news:blip", "old")
    assert (await next_pub(sub)).offset == 1

    # The broker lost the stream (Redis restarted empty): the node's position
    # check finds the new epoch and tells the subscription to resubscribe (2500).
    node = stagewire.app[NODE]
    await node.broker.restore_position("news:blip", StreamPosition(0, "new-epoch"))
    await node.positions.check()
    await eventually(lambda: recoveries, "the resubscribe")
    assert recoveries == [False] and sub.recovered is False and sub.epoch == "new-epoch"
    await publish(stagewire, "news:blip", "after")
    assert (await next_pub(sub)).data == "after"
    assert len(connects) == 1  # the connection stayed


async def test_a_stopping_server_spreads_the_reconnects_with_its_hint(make_stagewire, sdk, tmp_path) -> None:
    sw = await make_stagewire(make_settings(tmp_path, server={"shutdown_reconnect_after": [300, 400]}))
    connects: list[float] = []
    losses: list[tuple[float, Disconnected]] = []
    loop = asyncio.get_running_loop()
    # Without the hint, this backoff would come back within 10 ms.
    await sdk(sw, "alice", min_delay=0.01, max_delay=0.01, on_connect=lambda _: connects.append(loop.time()),
              on_disconnect=lambda d: losses.append((loop.time(), d)))
    node = sw.app[NODE]
    await node.shutdown(timeout=2)  # what SIGTERM does: 4000 with reconnect_after [300, 400]
    node.shutting_down = False  # and the node takes connections again at once
    await eventually(lambda: len(connects) == 2, "the reconnect")
    lost_at, lost = losses[0]
    assert lost.code == CloseCode.SHUTDOWN and lost.reconnect
    assert connects[1] - lost_at >= 0.3
