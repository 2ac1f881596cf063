"""Test clients and domain assertions: ``call``, ``recv_push``, ``assert_error``."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import msgpack
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

TIMEOUT = 5.0


class WSClient:
    """A real ``websockets`` client that speaks the Stagewire protocol."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self._next_id = 0
        self._inbox: deque[dict] = deque()
        self.connect_result: dict | None = None

    # -- sending ----------------------------------------------------------------

    def encode(self, message: Any) -> str | bytes:
        if self.binary:
            return msgpack.packb(message, use_bin_type=True)
        return orjson.dumps(message).decode()

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def send(self, type_: str, **params: Any) -> int:
        self._next_id += 1
        await self.ws.send(self.encode({"id": self._next_id, "type": type_, **params}))
        return self._next_id

    async def call(self, type_: str, **params: Any) -> dict:
        """Send a command and return its reply (pushes received meanwhile are kept)."""
        command_id = await self.send(type_, **params)
        return await self.reply(command_id)

    async def result(self, type_: str, **params: Any) -> Any:
        reply = await self.call(type_, **params)
        assert "result" in reply, f"{type_} failed: {reply}"
        return reply["result"]

    async def assert_error(self, code: int, type_: str, **params: Any) -> dict:
        reply = await self.call(type_, **params)
        assert "error" in reply, f"{type_} should fail with {code}: {reply}"
        assert reply["error"]["code"] == code, reply
        return reply["error"]

    # -- receiving --------------------------------------------------------------

    def _decode_frame(self, frame: str | bytes) -> list[dict]:
        if self.binary:
            assert isinstance(frame, bytes), "text frame on a msgpack connection"
            return list(msgpack.Unpacker(__import__("io").BytesIO(frame), raw=False))
        assert isinstance(frame, str), "binary frame on a JSON connection"
        return [orjson.loads(line) for line in frame.split("\n") if line]

    async def recv(self, timeout: float = TIMEOUT) -> dict:
        """The next message, whatever it is."""
        if not self._inbox:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            self._inbox.extend(self._decode_frame(frame))
        return self._inbox.popleft()

    async def reply(self, command_id: int, timeout: float = TIMEOUT) -> dict:
        kept: list[dict] = []
        try:
            while True:
                message = await self.recv(timeout)
                if message.get("id") == command_id:
                    return message
                kept.append(message)
        finally:
            self._inbox.extendleft(reversed(kept))

    async def recv_push(self, type_: str, timeout: float = TIMEOUT, **match: Any) -> dict:
        """The next push of ``type_`` (matching ``match``), skipping pings; other messages are kept."""
        kept: list[dict] = []
        try:
            while True:
                message = await self.recv(timeout)
                if message.get("type") == type_ and "id" not in message and all(
                    message.get(k) == v for k, v in match.items()
                ):
                    return message
                if message.get("type") != "ping":
                    kept.append(message)
        finally:
            self._inbox.extendleft(reversed(kept))

    async def recv_disconnect(self, timeout: float = TIMEOUT) -> tuple[dict, int | None]:
        """The ``disconnect`` push and the close code that followed it."""
        push = await self.recv_push("disconnect", timeout)
        try:
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("server did not close after disconnect") from None
        return push, self.ws.close_code

    def pending(self) -> list[dict]:
        """Messages received but not yet returned (kept while waiting for a reply or a push).

        A copy: reading it consumes nothing.
        """
        return list(self._inbox)

    async def assert_quiet(self) -> None:
        """No push is pending: a ping's reply arrives with nothing but pings before it.

        Deterministic, not timed: the server queues messages for one connection
        in order, so anything sent before the ping was handled comes first.
        """
        kept = [m for m in self._inbox if m.get("type") != "ping"]
        assert not kept, f"unexpected messages {kept}"
        self._inbox.clear()
        command_id = await self.send("ping")
        while True:
            message = await self.recv()
            if message.get("id") == command_id:
                return
            assert message.get("type") == "ping", f"unexpected message {message}"

    async def close(self) -> None:
        await self.ws.close()


async def connect_ws(url: str, subprotocol: str | None = "stagewire.json", **kwargs: Any) -> WSClient:
    protocols = [subprotocol] if subprotocol else None
    ws = await websockets.connect(url, subprotocols=protocols, open_timeout=TIMEOUT, **kwargs)
    return WSClient(ws, binary=(subprotocol == "stagewire.msgpack"))
