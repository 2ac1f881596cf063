"""SIGTERM with subscribers that stopped reading while they had a backlog.

The subscribers are raw sockets with a 4 KiB receive buffer: they upgrade,
connect and subscribe, then never read again. A publisher floods their
channel through ``POST /api/publish`` with 60 KB publications (400: more than
``write_buffer_limit``, so they are cut off as slow; 10: a backlog they still
hold), and the process is sent SIGTERM. Whatever those peers do, it must exit within
``shutdown_timeout`` + 1 s, and no connection may end as ``GET /ws 500``
(a handler cancelled by aiohttp's own shutdown).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import time

import aiohttp
import orjson
import pytest

from tests.serverproc import HOST, ServerProcess

SUBSCRIBERS = 50
PUBLICATIONS = 400
PAYLOAD = "x" * 60_000
SHUTDOWN_TIMEOUT = 3.0
API_KEY = "sigterm-key"


class StalledReader:
    """A WebSocket client on a raw socket that reads only until its subscription is confirmed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    async def subscribe(cls, port: int, token: str, channel: str, sockets: list[socket.socket]) -> StalledReader:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sockets.append(sock)  # the caller closes it, whatever happens here
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        self = cls(sock)
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(sock, (
            f"GET /ws HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: stagewire.json\r\n\r\n"
        ).encode())
        head = await self._read_until(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        await self.send({"id": 1, "type": "connect", "token": token})
        await self._read_until(b'{"id":1,"result"')
        await self.send({"id": 2, "type": "subscribe", "channel": channel})
        await self._read_until(b'{"id":2,"result"')
        return self  # and from now on it never reads

    async def send(self, message: dict) -> None:
        payload = orjson.dumps(message)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 65536
        header = struct.pack("!BB", 0x81, 0x80 | len(payload)) if len(payload) < 126 else \
            struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        frame = header + mask + masked
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def _read_until(self, marker: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        while marker not in self.buf:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 10)
            assert chunk, f"closed before {marker!r}: {self.buf[-200:]!r}"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head


@pytest.mark.parametrize("publications", [PUBLICATIONS, 10], ids=["cut off as slow", "backlog at SIGTERM"])
async def test_sigterm_exits_in_time_whatever_stalled_readers_hold(tmp_path, publications):
    server = ServerProcess(tmp_path, {
        "STAGEWIRE_API__KEYS": API_KEY,
        "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    })
    await server.start()
    sockets: list[socket.socket] = []
    try:
        await server.register("alice")
        token = await server.login("alice")
        await asyncio.gather(*(
            StalledReader.subscribe(server.port, token, "news:slow", sockets) for _ in range(SUBSCRIBERS)
        ))
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for _ in range(publications):
                async with http.post(f"{server.url}/api/publish", json={"channel": "news:slow", "data": PAYLOAD}) as r:
                    assert r.status == 200, await r.text()
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert await server.wait(SHUTDOWN_TIMEOUT + 5) == 0
        elapsed = time.monotonic() - started
    finally:
        await server.kill()
        for sock in sockets:
            sock.close()
    log = server.log_text()
    assert "GET /ws 500" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert elapsed <= SHUTDOWN_TIMEOUT + 1, f"exited {elapsed:.1f} s after SIGTERM"
