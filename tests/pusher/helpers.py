"""A raw Pusher protocol client (``websockets``) and the test app's settings."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import deque
from typing import Any, Callable, Mapping

import orjson
import pusher
import websockets

from tests.conftest import NAMESPACES, make_settings

TIMEOUT = 5.0
APP_ID, KEY, SECRET = "1001", "test-key", "test-secret"
NAMESPACE = "pusher"
APP: dict[str, Any] = {"id": APP_ID, "key": KEY, "secret": SECRET, "namespace": NAMESPACE, "client_events": True}
PUSHER_NAMESPACE = {"subscribe": "authenticated", "publish": "client", "join_leave": True, "presence": True,
                    "history_size": 10}


def pusher_settings(tmp_path, namespace: dict[str, Any] | None = None, **app: Any):
    return make_settings(
        tmp_path,
        pusher={"apps": [{**APP, **app}]},
        namespaces={**NAMESPACES, NAMESPACE: {**PUSHER_NAMESPACE, **(namespace or {})}},
        client={"command_rate": 10000, "command_burst": 10000},
    )


def sign(text: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def validator(secret: str = SECRET) -> Callable[[Mapping[str, str], bytes], dict[str, Any] | None]:
    """A webhook receiver's check: the official library's ``validate_webhook`` (None when refused)."""
    lib = pusher.Pusher(app_id=APP_ID, key=KEY, secret=secret)

    def verify(headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        key, signature = headers.get("X-Pusher-Key"), headers.get("X-Pusher-Signature")
        if key is None or signature is None:
            return None
        result: dict[str, Any] | None = lib.validate_webhook(key, signature, body)
        return result

    return verify


class PusherClient:
    """One Pusher connection over ``websockets``: send events, await the ones that come."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.socket_id = ""
        self.established: dict[str, Any] = {}
        self._inbox: deque[dict[str, Any]] = deque()

    @classmethod
    async def connect(cls, base_url: str, key: str = KEY, query: str = "protocol=7&client=test&version=1",
                      **kwargs: Any) -> "PusherClient":
        url = base_url.replace("http", "ws", 1) + f"/app/{key}?{query}"
        client = cls(await websockets.connect(url, open_timeout=TIMEOUT, **kwargs))
        first = await client.recv()
        if first["event"] == "pusher:connection_established":
            client.established = json.loads(first["data"])
            client.socket_id = client.established["socket_id"]
        else:
            client._inbox.appendleft(first)
        return client

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        message: dict[str, Any] = {"event": event, "data": data if data is not None else {}}
        if channel is not None:
            message["channel"] = channel
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        if self._inbox:
            return self._inbox.popleft()
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(frame, str)
        return json.loads(frame)  # one event per frame: a second object here would fail

    async def expect(self, event: str, channel: str | None = None, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next ``event`` (on ``channel``); other events are kept for later."""
        kept: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.recv(timeout)
                if message["event"] == event and (channel is None or message.get("channel") == channel):
                    return message
                kept.append(message)
        finally:
            self._inbox.extendleft(reversed(kept))

    async def assert_quiet(self) -> None:
        """Nothing pending: a ping's pong comes back with nothing before it."""
        assert not self._inbox, list(self._inbox)
        await self.send("pusher:ping")
        message = await self.recv()
        assert message["event"] == "pusher:pong", message

    def auth(self, channel: str, channel_data: str | None = None, secret: str = SECRET) -> str:
        text = f"{self.socket_id}:{channel}" + (f":{channel_data}" if channel_data else "")
        return f"{KEY}:{sign(text, secret)}"

    async def subscribe(self, channel: str, user_id: str | None = None, user_info: Any = None) -> dict[str, Any]:
        """Subscribe, signing as the app would; the subscription_succeeded (or error) event."""
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith("presence-"):
            channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
            data.update(auth=self.auth(channel, channel_data), channel_data=channel_data)
        elif channel.startswith("private-"):
            data["auth"] = self.auth(channel)
        await self.send("pusher:subscribe", data)
        kept: list[dict[str, Any]] = []
        try:
            while True:
                message = await self.recv()
                if message.get("channel") == channel and message["event"] in (
                        "pusher_internal:subscription_succeeded", "pusher:subscription_error"):
                    return message
                kept.append(message)
        finally:
            self._inbox.extendleft(reversed(kept))

    async def close(self) -> None:
        await self.ws.close()
