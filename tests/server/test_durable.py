"""Durable namespaces on SQLite, PostgreSQL and MariaDB: store, group commit, recover."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from tortoise import connections

from models.publication import PublicationRecord
from server.appkeys import NODE
from server.broker.base import IDEMPOTENCY_TTL, StreamPosition
from server.durable import DurableLog
from tests.conftest import NAMESPACES, make_settings

DURABLE = {**NAMESPACES, "log": {"publish": "client", "persist": True, "history_size": 2}}


@pytest.fixture
def durable_settings(tmp_path, database_url):
    return make_settings(tmp_path, database={"url": database_url}, namespaces=DURABLE)


async def test_publication_is_committed_before_it_is_acknowledged(make_stagewire, durable_settings):
    sw = await make_stagewire(durable_settings)
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="log:a")
    result = await alice.result("publish", channel="log:a", data={"text": "kept"})
    rows = await PublicationRecord.filter(channel="log:a").values("seq", "epoch", "data", "author")
    assert rows == [{"seq": 1, "epoch": result["epoch"], "data": '{"text":"kept"}', "author": "alice"}]
    push = await alice.recv_push("pub")
    assert push["offset"] == 1 and push["data"] == {"text": "kept"}


async def test_waiting_publications_share_one_transaction(make_stagewire, durable_settings):
    sw = await make_stagewire(durable_settings)
    node = sw.app[NODE]
    before = node.durable.commits
    positions = await asyncio.gather(*(node.publish("log:group", i) for i in range(50)))
    assert sorted(p.offset for p in positions) == list(range(1, 51))
    assert node.durable.commits - before <= 2, "50 waiting publications must not take 50 transactions"
    assert await PublicationRecord.filter(channel="log:group").count() == 50


async def test_gap_older_than_the_broker_window_is_recovered_from_the_database(make_stagewire, durable_settings):
    sw = await make_stagewire(durable_settings)
    alice = await sw.client("alice")
    sub = await alice.result("subscribe", channel="log:long")
    await alice.close()
    for i in range(10):
        await sw.api("POST", "/api/publish", {"channel": "log:long", "data": i})
    again = await sw.client("alice")
    result = await again.result("subscribe", channel="log:long", recover=True, offset=0, epoch=sub["epoch"])
    assert result["recovered"] is True
    assert [p["data"] for p in result["publications"]] == list(range(10))
    history = await again.result("history", channel="log:long", since={"offset": 3, "epoch": sub["epoch"]}, limit=4)
    assert [p["offset"] for p in history["publications"]] == [4, 5, 6, 7]
    # The broker's window is full (offsets 9, 10): an older range still comes whole, from the database.
    older = await again.result("history", channel="log:long", since={"offset": 3, "epoch": sub["epoch"]}, limit=2)
    assert [p["offset"] for p in older["publications"]] == [4, 5]
    oldest = await again.result("history", channel="log:long", limit=2)
    assert [p["offset"] for p in oldest["publications"]] == [1, 2]
    newest = await again.result("history", channel="log:long", limit=3, reverse=True)
    assert [p["offset"] for p in newest["publications"]] == [10, 9, 8]


async def test_recovery_survives_a_server_restart(make_stagewire, durable_settings):
    first = await make_stagewire(durable_settings)
    alice = await first.client("alice")
    sub = await alice.result("subscribe", channel="log:restart")
    await alice.result("publish", channel="log:restart", data="before")
    seen = await alice.recv_push("pub")
    await first.close_clients()
    await first.server.close()

    second = await make_stagewire(durable_settings)  # same database, fresh memory broker
    for text in ("while away 1", "while away 2"):
        await second.api("POST", "/api/publish", {"channel": "log:restart", "data": text})
    bob = await second.client("alice")
    result = await bob.result("subscribe", channel="log:restart", recover=True, offset=seen["offset"], epoch=sub["epoch"])
    assert result["recovered"] is True and result["epoch"] == sub["epoch"]
    assert [(p["offset"], p["data"]) for p in result["publications"]] == [(2, "while away 1"), (3, "while away 2")]


async def test_failed_commit_is_an_error_and_nothing_is_delivered(make_stagewire, durable_settings):
    sw = await make_stagewire(durable_settings)
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    await bob.result("subscribe", channel="log:broken")
    await connections.get("default").execute_script("DROP TABLE publications")
    error = await alice.assert_error(112, "publish", channel="log:broken", data="lost?")
    assert error["temporary"] is True
    await bob.assert_quiet()


@pytest.mark.parametrize("namespace", ["log", "quiet"])
async def test_idempotent_publish_is_delivered_once(make_stagewire, durable_settings, namespace):
    sw = await make_stagewire(durable_settings)
    alice = await sw.client("alice")
    await alice.result("subscribe", channel=f"{namespace}:idem")
    first = await alice.result("publish", channel=f"{namespace}:idem", data="x", idempotency_key="retry-1")
    again = await alice.result("publish", channel=f"{namespace}:idem", data="x", idempotency_key="retry-1")
    status, over_http = await sw.api("POST", "/api/publish", {"channel": f"{namespace}:idem", "data": "x", "idempotency_key": "retry-1"})
    assert status == 200
    assert first["offset"] == again["offset"] == over_http["offset"] == 1
    other = await alice.result("publish", channel=f"{namespace}:idem", data="y", idempotency_key="retry-2")
    assert other["offset"] == 2
    assert (await alice.recv_push("pub"))["data"] == "x"
    assert (await alice.recv_push("pub"))["data"] == "y"
    await alice.assert_quiet()


async def test_a_key_stored_by_another_node_meanwhile_is_answered_with_its_offset(
        make_stagewire, durable_settings, monkeypatch):
    """Two nodes both find a key unused, then both insert: the database keeps one row, the loser answers with it."""
    sw = await make_stagewire(durable_settings)
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="log:twice")
    first = await alice.result("publish", channel="log:twice", data="x", idempotency_key="k")
    # The retry's look-up runs before the first row is visible, as on another node.
    looked_up = DurableLog._stored_with_key
    misses = [1]

    async def not_seen_yet(self, channel, key):
        if misses:
            misses.pop()
            return None
        return await looked_up(self, channel, key)
    monkeypatch.setattr(DurableLog, "_stored_with_key", not_seen_yet)

    again = await alice.result("publish", channel="log:twice", data="x", idempotency_key="k")
    assert not misses  # the look-up was indeed skipped once
    assert (again["offset"], again["epoch"]) == (first["offset"], first["epoch"]) == (1, first["epoch"])
    assert await PublicationRecord.filter(channel="log:twice").count() == 1
    after = await alice.result("publish", channel="log:twice", data="y", idempotency_key="k2")
    assert after["offset"] == 2
    assert [(await alice.recv_push("pub"))["data"] for _ in range(2)] == ["x", "y"]
    await alice.assert_quiet()


async def test_a_key_past_its_lifetime_names_a_new_publication(make_stagewire, durable_settings):
    sw = await make_stagewire(durable_settings)
    alice = await sw.client("alice")
    first = await alice.result("publish", channel="log:old", data="x", idempotency_key="k")
    stored_at = datetime.now(timezone.utc) - timedelta(seconds=IDEMPOTENCY_TTL + 60)
    await PublicationRecord.filter(channel="log:old").update(created_at=stored_at)
    again = await alice.result("publish", channel="log:old", data="x2", idempotency_key="k")
    assert (first["offset"], again["offset"]) == (1, 2)
    rows = await PublicationRecord.filter(channel="log:old").order_by("seq").values_list("seq", "idempotency_key")
    assert rows == [(1, None), (2, "k")]  # the expired row gave its key up


class _HeldPositions:
    """A broker whose ``position`` answers only once released: a node that read, then waited."""

    def __init__(self, broker) -> None:
        self._broker = broker
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self._broker, name)

    async def position(self, channel):
        seen = await self._broker.position(channel)
        self.asked.set()
        await self.release.wait()
        return seen


async def test_a_node_restoring_a_lost_channel_late_does_not_undo_another_nodes_publications(
        make_stagewire, durable_settings):
    """Two nodes restore one channel the broker lost; the one that read the database first restores last."""
    sw = await make_stagewire(durable_settings)
    node = sw.app[NODE]
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="log:lost")
    first = await alice.result("publish", channel="log:lost", data=1)
    await alice.recv_push("pub")
    await node.broker.restore_position("log:lost", StreamPosition(0, "the-broker-lost-it"))

    held = _HeldPositions(node.broker)
    other = DurableLog(held)  # another node's log, on the same broker and database
    restoring = asyncio.create_task(other.position("log:lost"))
    await asyncio.wait_for(held.asked.wait(), 5)  # it read offset 1 from the database, and the lost broker
    second = await alice.result("publish", channel="log:lost", data=2)  # this node restores, then publishes 2
    assert (second["offset"], second["epoch"]) == (2, first["epoch"])
    assert (await alice.recv_push("pub"))["data"] == 2
    held.release.set()
    await asyncio.wait_for(restoring, 5)

    assert await node.broker.position("log:lost") == StreamPosition(2, first["epoch"])
    pubs, _ = await node.broker.history("log:lost")
    assert [p.offset for p in pubs] == [2]
    third = await alice.result("publish", channel="log:lost", data=3)
    assert third["offset"] == 3
    assert (await alice.recv_push("pub"))["data"] == 3
    await alice.assert_quiet()
