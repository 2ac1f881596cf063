"""The HTTP API through the official ``pusher`` server library (PyPI), and its signature rules.

The library is synchronous (requests): its calls run in a thread while the
server runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from urllib.parse import urlsplit

import aiohttp
import pusher
import pytest

from tests.pusher.helpers import APP_ID, KEY, NAMESPACE, SECRET, sign


def library(server, secret: str = SECRET) -> pusher.Pusher:
    parts = urlsplit(server.url)
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=secret, host=parts.hostname, port=parts.port, ssl=False)


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_trigger_reaches_pusher_and_native_subscribers_and_excludes_a_socket(pusher_app, pusher_client):
    lib = library(pusher_app)
    a, b = await pusher_client(), await pusher_client()
    await a.subscribe("news")
    await b.subscribe("news")
    native = await pusher_app.client("nat")
    await native.result("subscribe", channel=f"{NAMESPACE}:news")
    assert await call(lib.trigger, ["news", "other"], "headline", {"title": "hi"}) == {}
    for client in (a, b):
        event = await client.expect("headline", "news")
        assert json.loads(event["data"]) == {"title": "hi"}
    pub = await native.recv_push("pub", channel=f"{NAMESPACE}:news")
    assert pub["data"] == {"title": "hi"} and pub["info"] == {"event": "headline"}
    await call(lib.trigger, "news", "second", "plain text", socket_id=a.socket_id)
    assert (await b.expect("second", "news"))["data"] == "plain text"
    await a.assert_quiet()  # excluded


async def test_trigger_batch_and_info(pusher_app, pusher_client):
    lib = library(pusher_app)
    client = await pusher_client()
    await client.subscribe("presence-b", "u1")
    await client.subscribe("b2")
    batch = [{"channel": "presence-b", "name": "e1", "data": {"n": 1}},
             {"channel": "b2", "name": "e2", "data": "two"}]
    assert await call(lib.trigger_batch, batch) == {}
    assert json.loads((await client.expect("e1", "presence-b"))["data"]) == {"n": 1}
    assert (await client.expect("e2", "b2"))["data"] == "two"
    raw = await signed(pusher_app, "POST", f"/apps/{APP_ID}/events",
                       {"name": "e3", "channels": ["presence-b", "b2"], "data": "x",
                        "info": "user_count,subscription_count"})
    assert raw == (200, {"channels": {"presence-b": {"user_count": 1, "subscription_count": 1},
                                      "b2": {"subscription_count": 1}}})


async def test_channels_and_users_info(pusher_app, pusher_client):
    lib = library(pusher_app)
    alice, bob, watcher = await pusher_client(), await pusher_client(), await pusher_client()
    await alice.subscribe("presence-team", "alice")
    await bob.subscribe("presence-team", "bob")
    await watcher.subscribe("presence-team", "alice")
    await watcher.subscribe("public-1")
    assert await call(lib.channels_info) == {"channels": {"presence-team": {}, "public-1": {}}}
    assert await call(lib.channels_info, "presence-", ["user_count"]) == {
        "channels": {"presence-team": {"user_count": 2}}}
    assert await call(lib.channel_info, "presence-team", ["user_count", "subscription_count"]) == {
        "occupied": True, "user_count": 2, "subscription_count": 3}
    assert await call(lib.channel_info, "empty") == {"occupied": False}
    assert await call(lib.users_info, "presence-team") == {"users": [{"id": "alice"}, {"id": "bob"}]}
    with pytest.raises(pusher.errors.PusherBadRequest):
        await call(lib.users_info, "public-1")
    with pytest.raises(pusher.errors.PusherBadRequest):
        await call(lib.channels_info, None, ["user_count"])  # only with a presence- prefix
    await bob.close()
    for _ in range(100):
        if await call(lib.users_info, "presence-team") == {"users": [{"id": "alice"}]}:
            break
        await asyncio.sleep(0.05)
    assert await call(lib.users_info, "presence-team") == {"users": [{"id": "alice"}]}


async def test_terminate_user_connections_closes_every_signed_in_connection(pusher_app, pusher_client):
    lib = library(pusher_app)
    clients = [await pusher_client() for _ in range(2)]
    for client in clients:
        auth = await call(lib.authenticate_user, client.socket_id, {"id": "carol", "user_info": {}})
        await client.send("pusher:signin", auth)
        await client.expect("pusher:signin_success")
    bystander = await pusher_client()
    await call(lib.terminate_user_connections, "carol")
    for client in clients:
        await asyncio.wait_for(client.ws.wait_closed(), 5)
        assert client.ws.close_code == 4009
    await bystander.assert_quiet()
    # The documented path, with the app's id.
    assert (await signed(pusher_app, "POST", f"/apps/{APP_ID}/users/carol/terminate_connections", {}))[0] == 200


async def test_authenticate_signs_subscriptions_the_server_accepts(pusher_app, pusher_client):
    lib = library(pusher_app)
    client = await pusher_client()
    auth = await call(lib.authenticate, "private-doc", client.socket_id)
    await client.send("pusher:subscribe", {"channel": "private-doc", **auth})
    await client.expect("pusher_internal:subscription_succeeded", "private-doc")
    auth = await call(lib.authenticate, "presence-doc", client.socket_id, {"user_id": "dan", "user_info": {"a": 1}})
    await client.send("pusher:subscribe", {"channel": "presence-doc", **auth})
    ok = await client.expect("pusher_internal:subscription_succeeded", "presence-doc")
    assert json.loads(ok["data"])["presence"]["hash"] == {"dan": {"a": 1}}


async def test_a_wrong_secret_is_refused(pusher_app):
    with pytest.raises(pusher.errors.PusherBadAuth):
        await call(library(pusher_app, secret="wrong").trigger, "x", "e", "d")


async def signed(server, method: str, path: str, body=None, *, timestamp: float | None = None,
                 secret: str = SECRET, tamper: bool = False, extra: dict | None = None):
    """A request signed by hand, as the Pusher libraries sign them."""
    data = json.dumps(body).encode() if body is not None else b""
    params = {"auth_key": KEY, "auth_timestamp": str(int(timestamp or time.time())), "auth_version": "1.0",
              **(extra or {})}
    if data:
        params["body_md5"] = hashlib.md5(data).hexdigest()
    text = "\n".join([method, path, "&".join(f"{k}={v}" for k, v in sorted(params.items()))])
    params["auth_signature"] = sign(text, secret)
    if tamper:
        data = data.replace(b'"x"', b'"y"')
    async with aiohttp.ClientSession() as http:
        async with http.request(method, server.url + path, params=params, data=data,
                                headers={"Content-Type": "application/json"}) as r:
            text = await r.text()
            return r.status, (json.loads(text) if r.status == 200 else text)


async def test_signature_rules(pusher_app):
    event = {"name": "e", "channels": ["c"], "data": "x"}
    path = f"/apps/{APP_ID}/events"
    assert (await signed(pusher_app, "POST", path, event))[0] == 200
    status, text = await signed(pusher_app, "POST", path, event, timestamp=time.time() - 601)
    assert status == 401 and "Timestamp expired" in text
    assert (await signed(pusher_app, "POST", path, event, timestamp=time.time() + 601))[0] == 401
    assert (await signed(pusher_app, "POST", path, event, timestamp=time.time() - 590))[0] == 200
    status, text = await signed(pusher_app, "POST", path, event, tamper=True)
    assert status == 401 and "body_md5" in text
    assert (await signed(pusher_app, "POST", path, event, secret="nope"))[0] == 401
    assert (await signed(pusher_app, "POST", "/apps/999/events", event))[0] == 404
    async with aiohttp.ClientSession() as http:  # not signed at all
        async with http.post(pusher_app.url + path, json=event) as r:
            assert r.status == 401


@pytest.mark.parametrize("body,status,words", [
    ({"name": "e", "channels": [f"c{i}" for i in range(101)], "data": "x"}, 400, "Too many channels"),
    ({"name": "e" * 201, "channels": ["c"], "data": "x"}, 400, "Event name too long"),
    ({"name": "e", "channels": ["c" * 201], "data": "x"}, 400, "Invalid channel"),
    ({"name": "e", "channels": ["bad channel"], "data": "x"}, 400, "Invalid channel"),
    ({"name": "e", "channels": ["c"], "data": "x" * 10241}, 413, "Payload too large"),
    ({"name": "e", "channels": ["c"], "data": {"not": "a string"}}, 400, "data"),
    ({"name": "pusher:x", "channels": ["c"], "data": "x"}, 400, "reserved"),
    ({"name": "e", "channels": ["c"], "data": "x", "socket_id": "abc"}, 400, "socket_id"),
])
async def test_pushers_limits_and_status_codes(pusher_app, body, status, words):
    got, text = await signed(pusher_app, "POST", f"/apps/{APP_ID}/events", body)
    assert got == status and words in text


async def test_batches_are_limited_to_ten_events(pusher_app):
    batch = [{"channel": "c", "name": "e", "data": "x"}] * 11
    status, text = await signed(pusher_app, "POST", f"/apps/{APP_ID}/batch_events", {"batch": batch})
    assert status == 400 and "Batch too large" in text
