"""SIGTERM with thousands of connections: every client told, the peers' close frames awaited, a bound on the whole.

``CLIENTS`` raw WebSocket clients connect to a real server process. On
SIGTERM each must get the ``disconnect`` push (code 4000, ``reconnect``, the
configured ``reconnect_after``) and then a close frame 4000. Most clients
answer their close frame a little later (``ANSWER_DELAY``), as a busy peer
does: the server must keep their connection open until that answer (it waits
for the close handshake), then close it at once. A few never answer: they are cut off
at ``shutdown_timeout``, not before, and the process exits within
``shutdown_timeout`` + 1 s.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import struct
import time

import orjson

from tests.serverproc import HOST, ServerProcess

CLIENTS = 2000
SILENT = 20  # of them, never answer their close frame
ANSWER_DELAY = 0.3
SHUTDOWN_TIMEOUT = 3.0
HINT = [700, 900]


class Peer(asyncio.Protocol):
    """A WebSocket client: upgrade, ``connect``, then it waits for the server's close."""

    def __init__(self, host: str, answers: bool) -> None:
        self.host, self.answers = host, answers
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[dict] = loop.create_future()
        self.lost: asyncio.Future[float] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.pushes: list[dict] = []
        self.close_code: int | None = None
        self.answered_at: float | None = None  # when this client sent its close frame

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((
            f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: stagewire.json\r\n\r\n"
        ).encode())

    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None and len(payload) < 65536
        n = len(payload)
        header = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(header + mask + masked)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            head, sep, rest = bytes(self.buf).partition(b"\r\n\r\n")
            if not sep:
                return
            assert b" 101 " in head.split(b"\r\n", 1)[0], head
            self.upgraded, self.buf = True, bytearray(rest)
        while len(self.buf) >= 2:
            opcode, length, start = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
            if length == 126:
                if len(self.buf) < 4:
                    return
                length, start = struct.unpack("!H", self.buf[2:4])[0], 4
            assert length < 65536
            if len(self.buf) < start + length:
                return
            payload = bytes(self.buf[start:start + length])
            del self.buf[:start + length]
            self.frame(opcode, payload)

    def frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            for line in payload.split(b"\n"):
                message = orjson.loads(line)
                if message.get("id") == 1 and not self.connected.done():
                    self.connected.set_result(message)
                elif "id" not in message and message.get("type") != "ping":
                    self.pushes.append(message)
        elif opcode == 0x8:
            self.close_code = struct.unpack("!H", payload[:2])[0]
            if self.answers:
                asyncio.get_running_loop().call_later(ANSWER_DELAY, self.answer, payload[:2])

    def answer(self, code: bytes) -> None:
        if not self.lost.done():
            self.answered_at = time.monotonic()
            self.send(0x8, code)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(time.monotonic())
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before the connect reply"))


async def open_peer(port: int, token: str, answers: bool) -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(lambda: Peer(f"{HOST}:{port}", answers), HOST, port)
    peer.send(0x1, orjson.dumps({"id": 1, "type": "connect", "token": token}))
    reply = await asyncio.wait_for(peer.connected, 30)
    assert "result" in reply, reply
    return peer


async def test_sigterm_drains_thousands_of_connections_within_the_bound(tmp_path):
    server = ServerProcess(tmp_path, {
        "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER": orjson.dumps(HINT).decode(),
    })
    await server.start()
    peers: list[Peer] = []
    try:
        await server.register("alice")
        token = await server.login("alice")
        gate = asyncio.Semaphore(100)

        async def one(i: int) -> None:
            async with gate:
                peers.append(await open_peer(server.port, token, answers=i >= SILENT))

        await asyncio.gather(*(one(i) for i in range(CLIENTS)))
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert await server.wait(SHUTDOWN_TIMEOUT + 5) == 0
        elapsed = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*(p.lost for p in peers)), 5)
    finally:
        await server.kill()
        for peer in peers:
            if peer.transport is not None:
                peer.transport.abort()
    log = server.log_text()
    assert "Traceback" not in log and "cut short" not in log, log[-3000:]
    assert elapsed <= SHUTDOWN_TIMEOUT + 1, f"exited {elapsed:.1f} s after SIGTERM"
    for peer in peers:
        assert [(p["type"], p["code"], p["reconnect"], p.get("reconnect_after")) for p in peer.pushes] == [
            ("disconnect", 4000, True, HINT)
        ], peer.pushes
        assert peer.close_code == 4000
    answering = [p for p in peers if p.answers]
    # The server waited for each close handshake: it closed only after the peer answered.
    early = [p for p in answering if p.answered_at is None or p.lost.result() < p.answered_at]
    assert not early, f"{len(early)} of {len(answering)} connections closed before the peer answered"
    # The silent ones were kept until the deadline, then cut off.
    cut = sorted(p.lost.result() - started for p in peers if not p.answers)
    assert SHUTDOWN_TIMEOUT - 0.5 <= cut[0] and cut[-1] <= SHUTDOWN_TIMEOUT + 1, cut
    # And each answer ended its connection then, not at that deadline.
    late = [p for p in answering if p.lost.result() - started >= cut[0]]
    assert not late, f"{len(late)} of {len(answering)} connections were closed at the deadline despite their answer"
