"""pusher-js 8 and laravel-echo in Node against a real server process, signed by the official pusher library.

One ``python -m server`` and one Node process serve the whole module; each
test uses channels of its own. The last test restarts the server.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import pusher
import pytest
import pytest_asyncio

from tests.pusher.helpers import APP_ID, KEY, SECRET
from tests.pusher.nodedriver import NodeDriver
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPS = f'[{{id = "{APP_ID}", key = "{KEY}", secret = "{SECRET}", client_events = true}}]'


def library(server: ServerProcess) -> pusher.Pusher:
    parts = urlsplit(server.url)
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host=parts.hostname, port=parts.port, ssl=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory) -> AsyncIterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("pusherjs")
    proc = ServerProcess(directory, {
        "STAGEWIRE_PUSHER__APPS": APPS, "STAGEWIRE_SERVER__LOG_FORMAT": "text",
        "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": "2", "STAGEWIRE_BROKER__PRESENCE_TTL": "3",
    })
    await proc.start()
    yield proc
    await proc.stop()


# Who the presence members are: the test registers them here before subscribing.
USERS: dict[str, dict[str, Any]] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(server) -> AsyncIterator[NodeDriver]:
    lib = library(server)

    async def authorize(request: dict[str, Any]) -> dict[str, Any]:
        member = USERS.get(request["client"])
        if request["kind"] == "user":
            return await asyncio.to_thread(lib.authenticate_user, request["socket_id"], member)
        channel = request["channel"]
        custom = {"user_id": member["id"], "user_info": member["user_info"]} if channel.startswith("presence-") else None
        if channel.endswith("-forbidden"):
            return {"auth": f"{KEY}:not-a-signature"}
        return await asyncio.to_thread(lib.authenticate, channel, request["socket_id"], custom)

    driver = await NodeDriver.start(authorize)
    yield driver
    await driver.close()


async def test_public_channel_receives_events_of_the_http_api(server, node):
    await node.connect("pub1", server, KEY)
    await node.call("subscribe", client="pub1", channel="js-news")
    await node.expect(type="event", client="pub1", channel="js-news", event="pusher:subscription_succeeded")
    await asyncio.to_thread(library(server).trigger, "js-news", "headline", {"title": "from python"})
    event = await node.expect(type="event", client="pub1", event="headline")
    assert event["data"] == {"title": "from python"}


async def test_private_channels_are_signed_and_a_bad_signature_is_refused(server, node):
    await node.connect("priv", server, KEY)
    await node.call("subscribe", client="priv", channel="private-js")
    await node.expect(type="event", client="priv", channel="private-js", event="pusher:subscription_succeeded")
    await node.call("subscribe", client="priv", channel="private-forbidden")
    error = await node.expect(type="event", client="priv", channel="private-forbidden", event="pusher:subscription_error")
    assert error["data"]["status"] == 401


async def test_presence_members_and_client_events(server, node):
    USERS.update(ann={"id": "ann", "user_info": {"name": "Ann"}}, ben={"id": "ben", "user_info": {"name": "Ben"}})
    await node.connect("ann", server, KEY)
    await node.connect("ben", server, KEY)
    await node.call("subscribe", client="ann", channel="presence-js")
    first = await node.expect(type="event", client="ann", event="pusher:subscription_succeeded")
    assert first["data"]["members"] == ["ann"] and first["data"]["me"] == {"id": "ann", "info": {"name": "Ann"}}
    await node.call("subscribe", client="ben", channel="presence-js")
    second = await node.expect(type="event", client="ben", event="pusher:subscription_succeeded")
    assert second["data"]["members"] == ["ann", "ben"]
    added = await node.expect(type="event", client="ann", event="pusher:member_added")
    assert added["data"] == {"id": "ben", "info": {"name": "Ben"}}
    assert await node.call("members", client="ann", channel="presence-js") == {
        "count": 2, "members": [{"id": "ann", "info": {"name": "Ann"}}, {"id": "ben", "info": {"name": "Ben"}}]}
    await node.call("bind", client="ann", channel="presence-js", event="client-wave")
    assert await node.call("trigger", client="ben", channel="presence-js", event="client-wave", data={"hi": 1}) is True
    wave = await node.expect(type="bound", client="ann", event="client-wave")
    assert wave["data"] == {"hi": 1} and wave["metadata"] == {"user_id": "ben"}
    assert not node.matching(type="event", client="ben", event="client-wave")  # not echoed
    await node.call("unsubscribe", client="ben", channel="presence-js")
    removed = await node.expect(type="event", client="ann", event="pusher:member_removed")
    assert removed["data"] == {"id": "ben", "info": {"name": "Ben"}}


async def test_cache_channels(server, node):
    await node.connect("cache", server, KEY)
    await node.call("subscribe", client="cache", channel="cache-js-empty")
    await node.expect(type="event", client="cache", channel="cache-js-empty", event="pusher:cache_miss")
    await asyncio.to_thread(library(server).trigger, "cache-js", "price", {"p": 1})
    await asyncio.to_thread(library(server).trigger, "cache-js", "price", {"p": 2})
    await node.call("subscribe", client="cache", channel="cache-js")
    event = await node.expect(type="event", client="cache", channel="cache-js", event="price")
    assert event["data"] == {"p": 2}


async def test_sign_in_then_server_to_user_events_and_termination(server, node):
    USERS["signer"] = {"id": "sig", "user_info": {"role": "tester"}}
    await node.connect("signer", server, KEY)
    since = node.mark()
    await node.call("signin", client="signer")
    # pusher-js subscribes to #server-to-user-sig by itself once signed in; until
    # that subscription is made, a note reaches nobody, so send until one arrives.
    for _ in range(50):
        await asyncio.to_thread(library(server).send_to_user, "sig", "note", {"text": "just for you"})
        if node.matching(type="user_event", client="signer", event="note"):
            break
        await asyncio.sleep(0.1)
    note = await node.expect(type="user_event", client="signer", event="note", since=since)
    assert note["data"] == {"text": "just for you"}
    await asyncio.to_thread(library(server).terminate_user_connections, "sig")
    await node.expect(type="state", client="signer", current="disconnected", since=since)


async def test_laravel_echo_listens_whispers_and_joins(server, node):
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    USERS.update(e1={"id": "echo1", "user_info": {"name": "One"}}, e2={"id": "echo2", "user_info": {"name": "Two"}})
    for name in ("e1", "e2"):
        await node.call("echo_connect", client=name, key=KEY, host=host, port=port)
        await node.expect(type="state", client=name, current="connected")
    await node.call("echo_listen", client="e1", channel="orders", event=".OrderShipped")
    await node.call("echo_join", client="e1", channel="room")
    here = await node.expect(type="echo", client="e1", event="here")
    assert here["data"] == [{"name": "One"}]
    await node.call("echo_join", client="e2", channel="room")
    joining = await node.expect(type="echo", client="e1", event="joining")
    assert joining["data"] == {"name": "Two"}
    await node.call("echo_listen_whisper", client="e1", channel="typing", event="typing")
    await node.call("echo_listen_whisper", client="e2", channel="typing", event="typing")
    # Echo's private("typing") is private-typing; whisper once both are subscribed.
    for _ in range(100):
        info = await asyncio.to_thread(library(server).channel_info, "private-typing", ["subscription_count"])
        if info.get("subscription_count") == 2:
            break
        await asyncio.sleep(0.05)
    await node.call("echo_whisper", client="e2", channel="typing", event="typing", data={"who": "Two"})
    whisper = await node.expect(type="echo", client="e1", event="whisper:typing")
    assert whisper["data"] == {"who": "Two"}
    await asyncio.to_thread(library(server).trigger, "orders", "OrderShipped", {"order": 42})
    shipped = await node.expect(type="echo", client="e1", event=".OrderShipped")
    assert shipped["data"] == {"order": 42}
    await node.call("echo_leave", client="e2", channel="room")
    leaving = await node.expect(type="echo", client="e1", event="leaving")
    assert leaving["data"] == {"name": "Two"}
    assert not node.matching(type="echo", client="e2", event="whisper:typing")  # not echoed


async def test_clients_reconnect_and_resubscribe_after_a_restart(server, node):
    await node.connect("phoenix", server, KEY)
    await node.call("subscribe", client="phoenix", channel="js-restart")
    await node.expect(type="event", client="phoenix", channel="js-restart", event="pusher:subscription_succeeded")
    since = node.mark()
    await server.stop()
    await node.expect(type="state", client="phoenix", previous="connected", since=since)
    await server.start()
    await node.expect(type="state", client="phoenix", current="connected", since=since, timeout=30)
    await node.expect(type="event", client="phoenix", channel="js-restart",
                      event="pusher:subscription_succeeded", since=since, timeout=15)
    await asyncio.to_thread(library(server).trigger, "js-restart", "back", {"ok": True})
    assert (await node.expect(type="event", client="phoenix", event="back", since=since))["data"] == {"ok": True}
