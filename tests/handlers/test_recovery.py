"""History and recovery after a reconnect: everything missed, or recovered: false."""

from __future__ import annotations

from tests.conftest import make_settings


async def publish(sw, channel, data):
    status, body = await sw.api("POST", "/api/publish", {"channel": channel, "data": data})
    assert status == 200, body
    return body


async def test_reconnecting_client_gets_exactly_what_it_missed(stagewire):
    client = await stagewire.client("alice")
    sub = await client.result("subscribe", channel="news:feed")
    await publish(stagewire, "news:feed", "seen")
    seen = await client.recv_push("pub")
    await client.close()
    for i in range(3):
        await publish(stagewire, "news:feed", f"missed {i}")
    again = await stagewire.client("alice")
    result = await again.result("subscribe", channel="news:feed", recover=True, offset=seen["offset"], epoch=sub["epoch"])
    assert result["recovered"] is True
    assert [p["data"] for p in result["publications"]] == ["missed 0", "missed 1", "missed 2"]
    assert [p["offset"] for p in result["publications"]] == [2, 3, 4]
    assert result["offset"] == 4 and result["epoch"] == sub["epoch"]
    await publish(stagewire, "news:feed", "live")
    assert (await again.recv_push("pub"))["offset"] == 5


async def test_nothing_missed_is_recovered_with_no_publications(stagewire):
    client = await stagewire.client("alice")
    sub = await client.result("subscribe", channel="news:calm")
    await client.result("unsubscribe", channel="news:calm")
    result = await client.result("subscribe", channel="news:calm", recover=True, offset=0, epoch=sub["epoch"])
    assert result["recovered"] is True and result["publications"] == []


async def test_epoch_change_means_not_recovered_and_no_replay(stagewire):
    client = await stagewire.client("alice")
    await publish(stagewire, "news:reset", 1)
    result = await client.result("subscribe", channel="news:reset", recover=True, offset=0, epoch="other-epoch")
    assert result["recovered"] is False and result["publications"] == []


async def test_a_client_ahead_of_the_stream_is_not_recovered(stagewire):
    """It holds offsets the stream does not have (a failed-over Redis master lost them): they will be used again."""
    client = await stagewire.client("alice")
    sub = await client.result("subscribe", channel="news:back")
    await client.result("unsubscribe", channel="news:back")
    await publish(stagewire, "news:back", 1)
    result = await client.result("subscribe", channel="news:back", recover=True, offset=3, epoch=sub["epoch"])
    assert result["recovered"] is False and result["publications"] == []
    assert result["offset"] == 1 and result["epoch"] == sub["epoch"]


async def test_gap_larger_than_history_is_not_recovered_at_all(make_stagewire, tmp_path):
    namespaces = {"small": {"publish": "server", "history_size": 3}}
    sw = await make_stagewire(make_settings(tmp_path, namespaces=namespaces))
    client = await sw.client("alice")
    sub = await client.result("subscribe", channel="small:x")
    await client.close()
    for i in range(5):
        await publish(sw, "small:x", i)
    again = await sw.client("alice")
    result = await again.result("subscribe", channel="small:x", recover=True, offset=0, epoch=sub["epoch"])
    assert result["recovered"] is False and result["publications"] == []
    assert result["offset"] == 5


async def test_recovery_needs_offset_and_epoch(stagewire):
    client = await stagewire.client("alice")
    error = await client.assert_error(107, "subscribe", channel="news:x", recover=True)
    assert set(error["fields"]) == {"offset", "epoch"}
    error = await client.assert_error(107, "subscribe", channel="news:x", recover=True, offset=3)
    assert set(error["fields"]) == {"epoch"}


async def test_history_since_limit_reverse_and_permissions(stagewire):
    client = await stagewire.client("alice")
    for i in range(1, 6):
        body = await publish(stagewire, "news:hist", i)
    epoch = body["epoch"]
    result = await client.result("history", channel="news:hist")
    assert [p["data"] for p in result["publications"]] == [1, 2, 3, 4, 5]
    assert (result["offset"], result["epoch"]) == (5, epoch)
    result = await client.result("history", channel="news:hist", since={"offset": 3, "epoch": epoch})
    assert [p["offset"] for p in result["publications"]] == [4, 5]
    result = await client.result("history", channel="news:hist", limit=2, reverse=True)
    assert [p["offset"] for p in result["publications"]] == [5, 4]
    await client.assert_error(103, "history", channel="user:bob")
    await client.assert_error(102, "history", channel="nope:x")
    await client.assert_error(107, "history", channel="news:hist", limit=-1)
