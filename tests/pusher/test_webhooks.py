"""Webhooks in Pusher's format, received by a real HTTP receiver and checked with the official library.

Every POST is checked with ``pusher.Pusher.validate_webhook`` (the key, the
HMAC of the body with the app secret, ``time_ms`` within five minutes);
one it refuses is answered 401 and counted as unverified. A webhook's events
are delivered in the order they were stored, so an event that arrived proves
that every event stored before it for that webhook arrived (or never existed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import tomllib
from typing import Any, AsyncIterator

import pytest

from server.appkeys import HOOKS
from server.config import PUSHER_WEBHOOK_EVENTS, ConfigError, PusherWebhookFilter, PusherWebhookSettings, load_settings
from server.hooks import outbox
from tests.conftest import make_settings
from tests.hooks.conftest import FAST
from tests.hooks.receiver import ROOT, Receiver
from tests.pusher.helpers import APP_ID, KEY, SECRET, PusherClient, pusher_settings, validator

EVERY = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"]


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        await receiver.stop()


async def receiver_for(receivers: list[Receiver], path: str = "/pusher") -> Receiver:
    receiver = await Receiver(SECRET, path, verify=validator()).start()
    receivers.append(receiver)
    return receiver


def settings_with(tmp_path: Any, webhooks: list[dict[str, Any]], **hooks: Any) -> Any:
    return pusher_settings(tmp_path, webhooks=webhooks).replace(hooks={**FAST, **hooks}, server={"stats_interval": 0})


def events(receiver: Receiver, *names: str) -> list[tuple[Any, ...]]:
    return [(e["name"], e["channel"], e.get("user_id")) for e in (receiver.named(*names) if names else receiver.events)]


async def test_every_event_reaches_the_webhook_once_validated_by_the_pusher_library(
        make_stagewire, tmp_path, receivers):
    receiver = await receiver_for(receivers)
    server = await make_stagewire(settings_with(tmp_path, [{"url": receiver.url, "event_types": EVERY}]))
    a1 = await PusherClient.connect(server.url)
    a2 = await PusherClient.connect(server.url)
    b = await PusherClient.connect(server.url)
    await a1.subscribe("presence-w", "ua", {"n": 1})
    await a2.subscribe("presence-w", "ua", {"n": 1})  # the same user again: no second member_added
    await b.subscribe("presence-w", "ub")
    await a1.send("client-hi", {"x": 1}, "presence-w")
    await b.expect("client-hi", "presence-w")
    await b.subscribe("cache-w")
    await b.expect("pusher:cache_miss", "cache-w")

    await receiver.wait_names("cache_miss")
    assert events(receiver, "channel_occupied", "member_added") == [
        ("channel_occupied", "presence-w", None), ("member_added", "presence-w", "ua"),
        ("member_added", "presence-w", "ub"), ("channel_occupied", "cache-w", None)]
    [client_event] = receiver.named("client_event")
    assert client_event == {"name": "client_event", "channel": "presence-w", "event": "client-hi",
                            "data": '{"x":1}', "socket_id": a1.socket_id, "user_id": "ua"}
    assert receiver.named("cache_miss") == [{"name": "cache_miss", "channel": "cache-w"}]

    await a1.close()  # ua still has a2: not removed yet
    await b.close()
    await receiver.wait_names("member_removed", user_id="ub")
    await receiver.wait_names("channel_vacated", channel="cache-w")
    assert events(receiver, "member_removed", "channel_vacated") == [
        ("member_removed", "presence-w", "ub"), ("channel_vacated", "cache-w", None)]
    await a2.close()
    await receiver.wait_names("channel_vacated", channel="presence-w")
    assert events(receiver, "member_removed", "channel_vacated")[2:] == [
        ("member_removed", "presence-w", "ua"), ("channel_vacated", "presence-w", None)]

    assert receiver.posts and all(post["verified"] for post in receiver.posts)
    post = receiver.posts[0]
    assert post["headers"]["X-Pusher-Key"] == KEY
    assert set(json.loads(post["body"])) == {"time_ms", "events"}
    # The library refuses the same body signed with another secret, and a changed body.
    assert validator("another-secret")(post["headers"], post["body"]) is None
    assert validator()(post["headers"], post["body"].replace(b"presence-w", b"presence-x")) is None


async def test_event_types_and_the_channel_filter_choose_what_each_webhook_receives(
        make_stagewire, tmp_path, receivers):
    members, occupancy = await receiver_for(receivers, "/members"), await receiver_for(receivers, "/occupancy")
    server = await make_stagewire(settings_with(tmp_path, [
        {"url": members.url, "event_types": ["member_added", "member_removed"],
         "filter": {"channel_name_starts_with": "presence-team-"}},
        {"url": occupancy.url, "event_types": ["channel_occupied"], "filter": {"channel_name_ends_with": "-b"}},
    ]))
    c = await PusherClient.connect(server.url)
    await c.subscribe("presence-other", "u1")
    await c.subscribe("presence-team-a", "u1")
    await c.subscribe("orders-a")
    await c.subscribe("orders-b")
    await occupancy.wait_names("channel_occupied", channel="orders-b")
    assert events(occupancy) == [("channel_occupied", "orders-b", None)]
    await members.wait_names("member_added")
    await c.close()
    await members.wait_names("member_removed")
    assert events(members) == [("member_added", "presence-team-a", "u1"), ("member_removed", "presence-team-a", "u1")]


async def test_events_waiting_for_the_receiver_arrive_in_one_batch_or_one_by_one(make_stagewire, tmp_path, receivers):
    batched, single = await receiver_for(receivers, "/batched"), await receiver_for(receivers, "/single")
    batched.status = single.status = 503
    server = await make_stagewire(settings_with(tmp_path, [
        {"url": batched.url, "event_types": ["channel_occupied"]},
        {"url": single.url, "event_types": ["channel_occupied"], "batch": False},
    ], max_attempts=1000))
    c = await PusherClient.connect(server.url)
    for n in range(5):
        await c.subscribe(f"batch-{n}")
    hooks = server.app[HOOKS]
    assert await hooks.outbox.flush(5)
    assert sorted((s["webhook"], s["pending"]) for s in await outbox.summary()) == sorted([
        (f"pusher:{APP_ID}:{batched.url}", 5), (f"pusher:{APP_ID}:{single.url}", 5)])
    for _ in range(100):  # both are tried, and retried
        if batched.refused and single.refused:
            break
        await asyncio.sleep(0.05)
    assert batched.refused >= 1 and single.refused >= 1
    batched.status = single.status = 204
    for receiver in (batched, single):
        await receiver.wait_for(lambda e: len(e) == 5)
    channels = [f"batch-{n}" for n in range(5)]
    assert [e["channel"] for e in json.loads(batched.posts[-1]["body"])["events"]] == channels
    accepted = [json.loads(post["body"])["events"] for post in single.posts[-5:]]
    assert [[e["channel"] for e in events] for events in accepted] == [[c] for c in channels]
    assert all(len(json.loads(post["body"])["events"]) == 1 for post in single.posts)
    await c.close()


@pytest.mark.parametrize("hook, message", [
    ({"url": "http://127.0.0.1:1/x", "event_types": ["publish"]}, "event_types: unknown ['publish']"),
    ({"url": "http://127.0.0.1:1/x", "event_types": []}, "name at least one of"),
    ({"url": "ftp://x", "event_types": ["cache_miss"]}, "an http:// or https:// URL"),
    ({"url": "http://127.0.0.1:1/x", "event_types": ["cache_miss"], "filter": {"prefix": "a"}},
     "unknown setting pusher.apps[0].webhooks[0].filter.prefix"),
])
def test_a_webhook_of_a_pusher_app_is_checked_when_the_settings_load(tmp_path, hook, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        pusher_settings(tmp_path, webhooks=[hook])


def test_two_webhooks_of_an_app_need_distinct_names(tmp_path):
    hook = {"url": "http://127.0.0.1:1/x", "event_types": ["cache_miss"]}
    with pytest.raises(ConfigError, match="two webhooks of the same name"):
        pusher_settings(tmp_path, webhooks=[hook, hook])
    settings = pusher_settings(tmp_path, webhooks=[hook, {**hook, "name": "second"}])
    [app] = settings.pusher.apps
    assert [app.webhook_name(h) for h in app.webhooks] == [f"pusher:{APP_ID}:http://127.0.0.1:1/x",
                                                           f"pusher:{APP_ID}:second"]


def test_docs_describe_every_event_type_and_key_and_their_example_loads(tmp_path):
    doc = (ROOT / "docs" / "pusher.md").read_text()
    section = doc[doc.index("## Webhooks"):doc.index("## Pointing each SDK")]
    for name in PUSHER_WEBHOOK_EVENTS:
        assert f"| `{name}` |" in section, name
    for cls in (PusherWebhookSettings, PusherWebhookFilter):
        for field in dataclasses.fields(cls):
            assert field.name in section, field.name
    [example] = re.findall(r"```toml\n(.*?)```", section, re.S)
    raw = tomllib.loads(example)
    raw["pusher"]["apps"][0]["secret"] = "from-the-environment"
    [app] = make_settings(tmp_path, pusher=raw["pusher"]).pusher.apps
    assert [h.event_types for h in app.webhooks] == [
        ("channel_occupied", "channel_vacated", "member_added", "member_removed"), ("client_event",)]
    assert app.webhooks[1].filter.takes("private-chat-7") and not app.webhooks[1].filter.takes("private-x")


def test_an_apps_webhooks_come_from_the_environment_as_documented():
    inline = '[{url = "https://x.example/h", event_types = ["member_added"], filter = {channel_name_ends_with = "-b"}}]'
    settings = load_settings(ROOT / "config.toml", environ={
        "STAGEWIRE_PUSHER__APPS__0__ID": "app1", "STAGEWIRE_PUSHER__APPS__0__KEY": "k",
        "STAGEWIRE_PUSHER__APPS__0__SECRET": "s", "STAGEWIRE_PUSHER__APPS__0__WEBHOOKS": inline})
    [hook] = settings.pusher.apps[0].webhooks
    assert (hook.url, hook.event_types, hook.batch) == ("https://x.example/h", ("member_added",), True)
    assert hook.filter.takes("presence-a-b") and not hook.filter.takes("presence-a")
