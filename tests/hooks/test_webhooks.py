"""Webhooks end to end, one node: a real receiver, every event's shape, filters, grace, signatures."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import orjson
import pytest

from server.hooks import signing
from tests.hooks.conftest import SECRET, hook_settings
from tests.hooks.receiver import EXAMPLES, verify_webhook

COMMON = {"id", "name", "time_ms"}
#: The documented shape of every event (docs/hooks.md, "Events"): exactly these keys.
SHAPES = {
    "connect": COMMON | {"client", "user", "node"},
    "disconnect": COMMON | {"client", "user", "node", "code", "reason"},
    "subscribe": COMMON | {"channel", "client", "user", "node"},
    "unsubscribe": COMMON | {"channel", "client", "user", "node"},
    "publish": COMMON | {"channel", "offset", "epoch", "data"},  # + "info" when a client published
    "client_event": COMMON | {"channel", "client", "user", "node", "data", "offset", "epoch"},
    "channel_occupied": COMMON | {"channel"},
    "channel_vacated": COMMON | {"channel"},
    "member_added": COMMON | {"channel", "user"},
    "member_removed": COMMON | {"channel", "user"},
}


def shape_of(event: dict) -> set[str]:
    return set(event) - ({"info"} if event["name"] == "publish" else set())


async def test_every_event_type_arrives_with_its_documented_shape(make_stagewire, tmp_path, receiver):
    sw = await make_stagewire(hook_settings(tmp_path, receiver.url))
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="chat:shapes")
    bob = await sw.client("bob")
    await bob.result("subscribe", channel="chat:shapes")
    await alice.result("publish", channel="chat:shapes", data={"text": "hi"})
    status, _ = await sw.api("POST", "/api/publish", {"channel": "chat:shapes", "data": "from the server"})
    assert status == 200
    await bob.result("unsubscribe", channel="chat:shapes")
    await alice.close()
    await bob.close()
    await receiver.wait_for(lambda es: sum(e["name"] == "disconnect" for e in es) == 2
                            and sum(e["name"] == "member_removed" for e in es) == 2
                            and any(e["name"] == "channel_vacated" for e in es), what="everything")
    events = receiver.events

    assert {e["name"] for e in events} == set(SHAPES)
    for event in events:
        assert shape_of(event) == SHAPES[event["name"]], event
        assert isinstance(event["time_ms"], int) and isinstance(event["id"], str)
    assert len({e["id"] for e in events}) == len(events)
    names = [(e["name"], e.get("user")) for e in events if e.get("channel", "chat:shapes") == "chat:shapes"]
    # The order of one channel's events is the order they happened.
    assert names.index(("connect", "alice")) < names.index(("subscribe", "alice")) \
        < names.index(("channel_occupied", None)) < names.index(("publish", None)) \
        < names.index(("unsubscribe", "bob")) < names.index(("channel_vacated", None))
    assert [e["user"] for e in receiver.named("member_added")] == ["alice", "bob"]
    assert sorted(e["user"] for e in receiver.named("member_removed")) == ["alice", "bob"]
    assert len(receiver.named("channel_occupied")) == len(receiver.named("channel_vacated")) == 1
    pubs = receiver.named("publish")
    assert [(p["offset"], p["data"], p.get("info")) for p in pubs] == [
        (1, {"text": "hi"}, {"user": "alice"}), (2, "from the server", None)]
    [client_event] = receiver.named("client_event")
    assert (client_event["user"], client_event["data"], client_event["offset"]) == ("alice", {"text": "hi"}, 1)
    assert client_event["client"] == alice.connect_result["client"]
    [disconnect] = [e for e in receiver.named("disconnect") if e["user"] == "alice"]
    assert disconnect["code"] == 1000 and disconnect["node"] == alice.connect_result["node"]
    assert all(post["verified"] for post in receiver.posts)
    headers = receiver.posts[0]["headers"]
    assert headers["X-Stagewire-Webhook"] == "test" and headers["Content-Type"] == "application/json"


async def test_signatures_verify_and_tampering_or_age_is_refused(make_stagewire, tmp_path, receiver):
    sw = await make_stagewire(hook_settings(tmp_path, receiver.url, events=("connect",)))
    await sw.client("alice")
    await receiver.wait_names("connect", user="alice")
    post = receiver.posts[-1]
    body, signature = post["body"], post["headers"]["X-Stagewire-Signature"]
    assert signature == signing.sign(SECRET, body) and signature.startswith("sha256=")
    payload = verify_webhook(SECRET, body, signature)
    assert payload is not None and payload["events"][0]["user"] == "alice"
    assert verify_webhook("another secret", body, signature) is None
    assert verify_webhook(SECRET, body.replace(b"alice", b"mallory"), signature) is None
    assert verify_webhook(SECRET, body, None) is None
    # A body signed properly but long ago (a replay) is refused for its time_ms.
    old = orjson.dumps({"time_ms": (orjson.loads(body)["time_ms"] - 3_600_000), "events": []})
    assert verify_webhook(SECRET, old, signing.sign(SECRET, old)) is None
    assert signing.verify(SECRET, body, signature, orjson.loads(body)["time_ms"])


async def test_the_node_verification_snippet_accepts_real_posts_and_refuses_forgeries(
        make_stagewire, tmp_path, receiver):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("STAGEWIRE_REQUIRE_SERVICES") == "1":
            pytest.fail("Node.js is not installed (apt-get install -y nodejs) (STAGEWIRE_REQUIRE_SERVICES=1)")
        pytest.skip("Node.js is not installed (apt-get install -y nodejs)")
    sw = await make_stagewire(hook_settings(tmp_path, receiver.url, events=("connect",)))
    await sw.client("alice")
    await receiver.wait_names("connect", user="alice")
    post = receiver.posts[-1]
    body, signature = post["body"], post["headers"]["X-Stagewire-Signature"]

    def run(data: bytes, secret: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([node, str(EXAMPLES / "verify_webhook.mjs"), secret, signature],
                              input=data.decode(), capture_output=True, text=True, timeout=20)

    ok = await asyncio.to_thread(run, body, SECRET)
    assert ok.returncode == 0 and orjson.loads(ok.stdout) == ["connect"], ok.stderr
    forged = await asyncio.to_thread(run, body.replace(b"alice", b"mallory"), SECRET)
    assert forged.returncode == 1 and forged.stdout.strip() == "refused"
    wrong = await asyncio.to_thread(run, body, "another secret")
    assert wrong.returncode == 1


async def test_channel_filters_take_namespaces_patterns_and_channels(make_stagewire, tmp_path, receiver):
    more = [
        {"url": receiver.url + "?b", "events": ["subscribe"], "channels": ["room:a*"], "secret": SECRET, "name": "b"},
        {"url": receiver.url + "?c", "events": ["subscribe"], "channels": ["news:main"], "secret": SECRET,
         "name": "c"},
    ]
    sw = await make_stagewire(hook_settings(tmp_path, receiver.url, events=("subscribe", "connect"),
                                            channels=("chat",), more=more))
    alice = await sw.client("alice")
    for channel in ("chat:one", "room:abc", "room:xyz", "news:main", "news:other"):
        await alice.result("subscribe", channel=channel)
    await receiver.wait_for(lambda es: len([e for e in es if e["name"] == "subscribe"]) >= 3)
    await asyncio.sleep(0.3)  # anything else would have arrived meanwhile
    by_hook = sorted((p["headers"]["X-Stagewire-Webhook"], e["channel"])
                     for p in receiver.posts for e in orjson.loads(p["body"])["events"] if e["name"] == "subscribe")
    assert by_hook == [("b", "room:abc"), ("c", "news:main"), ("test", "chat:one")]
    # Events without a channel pass every filter.
    assert [e["user"] for e in receiver.named("connect")] == ["alice"]


async def test_a_quick_return_within_the_grace_reports_nothing(make_stagewire, tmp_path, receiver):
    sw = await make_stagewire(hook_settings(
        tmp_path, receiver.url, hooks={"grace": 1.0},
        events=("channel_occupied", "channel_vacated", "member_added", "member_removed", "connect")))
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="chat:reload")
    await receiver.wait_names("channel_occupied", "member_added")
    await alice.close()  # a page reload: gone, and back within the grace
    again = await sw.client("alice")
    await again.result("subscribe", channel="chat:reload")
    await receiver.wait_for(lambda es: len([e for e in es if e["name"] == "connect"]) == 2)
    await asyncio.sleep(1.5)  # past the grace: a vacated would have been reported by now
    assert [e["name"] for e in receiver.events if e["name"] != "connect"] == ["channel_occupied", "member_added"]
    await again.close()
    gone = await receiver.wait_names("channel_vacated", "member_removed", timeout=5)
    assert sorted(e["name"] for e in gone) == ["channel_vacated", "member_removed"]


async def test_events_are_batched_into_few_posts(make_stagewire, tmp_path, receiver):
    sw = await make_stagewire(hook_settings(tmp_path, receiver.url, events=("publish",),
                                            hooks={"batch_max": 50}))
    alice = await sw.client("alice")
    ids = [await alice.send("publish", channel="chat:batch", data=i) for i in range(120)]
    for command_id in ids:
        assert "result" in await alice.reply(command_id)
    await receiver.wait_for(lambda es: len(es) == 120)
    assert [e["data"] for e in receiver.events] == list(range(120))
    assert all(len(orjson.loads(p["body"])["events"]) <= 50 for p in receiver.posts)
    assert len(receiver.posts) < 60
    for _ in range(50):  # the sender counts after the receiver answered
        async with sw.http.get(f"{sw.url}/metrics") as r:
            text = await r.text()
        if 'stagewire_webhook_events_delivered_total{webhook="test"} 120.0' in text:
            break
        await asyncio.sleep(0.05)
    assert 'stagewire_webhook_events_delivered_total{webhook="test"} 120.0' in text
    assert "stagewire_webhook_events_emitted_total 120.0" in text
    assert f'stagewire_hook_requests_total{{target="webhook:test"}} {float(len(receiver.posts))}' in text
