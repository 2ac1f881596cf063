"""A minimal WebSocket client for load generation.

The load generator must not be the bottleneck: a full client library parses
every message, which costs more than the server spends delivering it. This
client does the HTTP upgrade, masks what it sends, and for incoming frames only
counts messages (newlines + 1 per JSON frame) and, when asked, extracts the
send timestamp of each publication for latency. Only for bench/, against
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from typing import Callable

import orjson

_MARKER = b'"t":'


class RawWS(asyncio.Protocol):
    def __init__(self, path: str, host: str, subprotocol: str = "stagewire.json", on_latency: Callable[[float], None] | None = None) -> None:
        self.path = path
        self.host = host
        self.subprotocol = subprotocol
        self.on_latency = on_latency
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._handshaken = False
        self._buf = bytearray()
        self.messages = 0
        self.frames = 0
        self.close_code: int | None = None
        self._waiters: dict[int, asyncio.Future[dict]] = {}
        self.track_replies = True

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {self.subprotocol}\r\n\r\n"
        )
        self.transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if b" 101" not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self._handshaken = True
            self.opened.set_result(None)
        while True:
            n = len(buf)
            if n < 2:
                return
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            pos = 2
            if length == 126:
                if n < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif length == 127:
                if n < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                pos = 10
            if n < pos + length:
                return
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            self._frame(opcode, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))

    # -- frames -----------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            self.frames += 1
            count = payload.count(b"\n") + 1
            self.messages += count
            if self._waiters and b'"id"' in payload:
                for line in payload.split(b"\n"):
                    if line.startswith(b'{"id"'):
                        msg = orjson.loads(line)
                        fut = self._waiters.pop(msg["id"], None)
                        if fut is not None and not fut.done():
                            fut.set_result(msg)
            if self.on_latency is not None:
                now = time.time()
                start = 0
                while True:
                    i = payload.find(_MARKER, start)
                    if i < 0:
                        break
                    j = i + 4
                    k = j
                    while k < len(payload) and payload[k] not in b",}":
                        k += 1
                    self.on_latency(now - float(payload[j:k]))
                    start = k
        elif opcode == 0x9:  # ping → pong
            self._send(0xA, payload)
        elif opcode == 0x8:
            if len(payload) >= 2:
                self.close_code = struct.unpack("!H", payload[:2])[0]
            self._send(0x8, payload[:2])
            assert self.transport is not None
            self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if n < 256 else _mask(payload, mask)
        assert self.transport is not None
        self.transport.write(header + mask + masked)

    def send_text(self, text: bytes) -> None:
        self._send(0x1, text)

    async def call(self, message: dict) -> dict:
        fut = asyncio.get_running_loop().create_future()
        self._waiters[message["id"]] = fut
        self.send_text(orjson.dumps(message))
        return await fut


def _mask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes(mask * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


async def open_ws(host: str, port: int, **kwargs) -> RawWS:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: RawWS("/ws", f"{host}:{port}", **kwargs), host, port)
    await proto.opened
    return proto
