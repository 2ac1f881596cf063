"""The bare reference server: what a WebSocket fan-out costs with nothing else.

aiohttp on uvloop, no authentication, no broker, no database. It speaks just
enough of Stagewire's JSON protocol for the same load generator
(``bench/wsraw.py``) to drive both: ``connect`` (accepted without a look at the
token), ``subscribe`` and ``publish``, several per frame separated by newlines.

A publication is encoded once and appended to each subscriber's pending list;
once per loop tick every connection with something pending gets one frame (its
messages joined by newlines) in one ``transport.write``. That is the floor the
real server is measured against (``bench/fanout.py --servers bare stagewire``).

Usage::

    python -m bench.bare_server --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import struct

import orjson
from aiohttp import WSMsgType, web


def _header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class Peer:
    __slots__ = ("transport", "pending")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.pending: list[bytes] = []


class Bare:
    """The channels and the once-per-tick flush."""

    def __init__(self) -> None:
        self.channels: dict[str, set[Peer]] = {}
        self.offsets: dict[str, int] = {}
        self.dirty: list[Peer] = []
        self.scheduled = False
        self.loop = asyncio.get_running_loop()

    def queue(self, peer: Peer, payload: bytes) -> None:
        pending = peer.pending
        if not pending:
            self.dirty.append(peer)
            if not self.scheduled:
                self.scheduled = True
                self.loop.call_soon(self.flush)
        pending.append(payload)

    def flush(self) -> None:
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for peer in dirty:
            pending = peer.pending
            peer.pending = []
            if peer.transport.is_closing():
                continue
            body = pending[0] if len(pending) == 1 else b"\n".join(pending)
            peer.transport.write(_header(len(body)) + body)

    def publish(self, channel: str, data: object) -> None:
        offset = self.offsets[channel] = self.offsets.get(channel, 0) + 1
        payload = orjson.dumps({"type": "pub", "channel": channel, "offset": offset, "data": data})
        queue = self.queue
        for peer in self.channels.get(channel, ()):
            queue(peer, payload)

    def command(self, peer: Peer, message: dict, subscribed: list[str]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            channel = message["channel"]
            self.channels.setdefault(channel, set()).add(peer)
            subscribed.append(channel)
        elif kind == "publish":
            self.publish(message["channel"], message.get("data"))
        self.queue(peer, orjson.dumps({"id": message["id"], "result": {}}))


BARE: web.AppKey[Bare] = web.AppKey("bare", Bare)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=("stagewire.json",), compress=False)
    await ws.prepare(request)
    assert request.transport is not None
    bare = request.app[BARE]
    peer = Peer(request.transport)
    subscribed: list[str] = []
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                for line in msg.data.split("\n"):
                    bare.command(peer, orjson.loads(line), subscribed)
    finally:
        for channel in subscribed:
            bare.channels[channel].discard(peer)
    return ws


async def readyz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node": "bare"})


async def bare_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    app[BARE] = Bare()
    yield


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(bare_ctx)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/readyz", readyz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    from server.cli.serve import raise_open_files_limit

    raise_open_files_limit()
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None, shutdown_timeout=1)


if __name__ == "__main__":
    main()
