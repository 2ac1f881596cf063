"""pysher (PyPI), a second Pusher client library, against the server."""

from __future__ import annotations

import asyncio
import json
import logging
import queue

import pysher
import pytest

from server.appkeys import PUSHER
from tests.pusher.helpers import KEY, NAMESPACE, SECRET

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def wait_for(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_pysher_subscribes_to_public_private_and_presence_channels(pusher_app):
    port = int(pusher_app.url.rsplit(":", 1)[1])
    client = pysher.Pusher(KEY, secure=False, custom_host="127.0.0.1", port=port, secret=SECRET,
                           user_data={"user_id": "py", "user_info": {"lib": "pysher"}}, log_level=logging.WARNING)
    got: queue.Queue = queue.Queue()
    connected = asyncio.Event()
    loop = asyncio.get_running_loop()
    client.connection.bind("pusher:connection_established", lambda data: loop.call_soon_threadsafe(connected.set))
    client.connect()
    try:
        await asyncio.wait_for(connected.wait(), 10)
        for name in ("plain", "private-p", "presence-p"):
            channel = client.subscribe(name)
            channel.bind("hello", lambda data, name=name: got.put((name, data)))
        native = await pusher_app.client("nat")
        await native.result("subscribe", channel=f"{NAMESPACE}:presence-p")
        await wait_for(lambda: len(pusher_app.app[PUSHER].connections) == 1 and all(
            set(c.subscriptions) >= {f"{NAMESPACE}:plain", f"{NAMESPACE}:private-p", f"{NAMESPACE}:presence-p"}
            for c in pusher_app.app[PUSHER].connections.values()))
        for name in ("plain", "private-p", "presence-p"):
            await pusher_app.api("POST", "/api/publish", {"channel": f"{NAMESPACE}:{name}", "data": {"to": name},
                                                          "event": "hello"})
        seen = {}
        for _ in range(3):
            name, data = await asyncio.to_thread(got.get, True, 10)
            seen[name] = json.loads(data)
        assert seen == {n: {"to": n} for n in ("plain", "private-p", "presence-p")}
        members = await native.result("presence", channel=f"{NAMESPACE}:presence-p")
        assert {"user": "py", "connections": 1} in members["users"]
    finally:
        await asyncio.to_thread(client.disconnect, 2)
