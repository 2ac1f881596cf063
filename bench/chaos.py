"""Parts shared by the fault benchmarks (``bench/chaos_redis.py``, ``bench/chaos_node.py``).

* :class:`RedisServer`: a ``redis-server`` of the benchmark's own on a free
  127.0.0.1 port, nothing on disk, to SIGKILL and restart empty.
* :func:`start_nodes`: server processes sharing that Redis, one SQLite file
  and one secret, as the nodes of one deployment.
* :class:`Subscriber`: a client that does what the protocol asks of one. It
  keeps each channel's last offset and epoch, reconnects after a close (to the
  next URL of its failover list when a node is gone) and subscribes again with
  ``recover: true``. It records every publication it got, every
  ``recovered: false``, and any offset it skipped without being told.
* :class:`Publisher`: a steady publisher through ``POST /api/publish``, which
  records every acknowledged offset and every failure with its latency.
* :func:`wait_all` and :func:`spread`: how long until every subscriber got
  somewhere, and the median and slowest of a set of moments.

Only for bench/, against 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp
import orjson
import websockets

from bench.fanout import API_KEY, HOST, ServerProcess, free_port


class RedisServer:
    """``redis-server --save '' --appendonly no`` on a free port: a restart comes back empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, self.port)
                writer.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                await asyncio.sleep(0.02)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


async def start_nodes(directory: Path, redis_url: str, count: int, env: dict[str, str]) -> list[ServerProcess]:
    """``count`` servers on one Redis (prefix ``chaos``), one SQLite file and one secret."""
    shared = {"STAGEWIRE_BROKER__BACKEND": "redis", "STAGEWIRE_BROKER__REDIS_URL": redis_url,
              "STAGEWIRE_BROKER__PREFIX": "chaos", **env}
    nodes = []
    for _ in range(count):  # one after the other: the first one writes the secret file
        node = ServerProcess(str(directory), free_port(), shared)
        await node.start()
        nodes.append(node)
    return nodes


def kill_node(node: ServerProcess) -> None:
    assert node.proc is not None
    node.proc.send_signal(signal.SIGKILL)


@dataclass
class Subscription:
    offset: int = 0
    epoch: str = ""
    got: set[tuple[str, int]] = field(default_factory=set)
    not_recovered: list[float] = field(default_factory=list)  # when recovered: false came
    recovered: int = 0
    skipped: int = 0  # offsets jumped over by a live pub: lost without being told
    last_live: float = 0.0  # when the last live pub arrived
    live_at: list[float] = field(default_factory=list)  # when each live pub arrived
    told: list[float] = field(default_factory=list)  # when the server ended it (unsubscribe push)

    def first_live_after(self, since: float) -> float | None:
        return next((t for t in self.live_at if t > since), None)


class Subscriber:
    """One recovering client; ``urls`` is its failover list, first choice first."""

    def __init__(self, urls: list[str], token: str, channels: list[str]) -> None:
        self.urls, self.token = urls, token
        self.subs = {channel: Subscription() for channel in channels}
        self.closes: list[tuple[float, int | None]] = []
        self.connected_to: str | None = None
        self.ready = asyncio.Event()  # connected and every channel subscribed
        self.errors: list[str] = []
        self.ready_at: list[float] = []  # when every channel was subscribed, per connection
        self._ids = 100

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            url = self.urls[attempt % len(self.urls)]
            try:
                async with websockets.connect(url, subprotocols=["stagewire.json"], open_timeout=5,
                                              close_timeout=1, max_queue=None) as ws:
                    await self._session(ws, url, stop)
                attempt = 0
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                attempt += 1
            except RuntimeError as exc:  # refused: counted, and tried again
                self.errors.append(str(exc))
                attempt += 1
            self.connected_to = None
            self.ready.clear()
            if not stop.is_set():
                await asyncio.sleep(random.uniform(0.1, 0.3) * min(8, 2 ** min(attempt, 3)))

    async def _session(self, ws: websockets.ClientConnection, url: str, stop: asyncio.Event) -> None:
        pending: dict[int, str] = {}
        await ws.send(orjson.dumps({"id": 1, "type": "connect", "token": self.token}).decode())
        for channel, sub in self.subs.items():
            await self._subscribe(ws, channel, sub, pending)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait([receiving, stopping], return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    return
                try:
                    frame = receiving.result()
                except websockets.ConnectionClosed:
                    self.closes.append((time.monotonic(), ws.close_code))
                    return
                for line in str(frame).split("\n"):
                    await self._handle(ws, orjson.loads(line), pending, url)
        finally:
            stopping.cancel()

    async def _subscribe(self, ws: websockets.ClientConnection, channel: str, sub: Subscription,
                         pending: dict[int, str]) -> None:
        self._ids += 1
        command: dict[str, object] = {"id": self._ids, "type": "subscribe", "channel": channel}
        if sub.epoch:
            command.update(recover=True, offset=sub.offset, epoch=sub.epoch)
        pending[self._ids] = channel
        await ws.send(orjson.dumps(command).decode())

    async def _handle(self, ws: websockets.ClientConnection, message: dict, pending: dict[int, str], url: str) -> None:
        kind = message.get("type")
        if kind == "pub":
            sub = self.subs.get(message["channel"])
            if sub is None:
                return
            if sub.epoch and message["offset"] > sub.offset + 1:
                sub.skipped += message["offset"] - sub.offset - 1
            sub.offset = message["offset"]
            sub.got.add((sub.epoch, sub.offset))
            sub.last_live = time.monotonic()
            sub.live_at.append(sub.last_live)
            return
        if kind == "unsubscribe" and message.get("channel") in self.subs:
            sub = self.subs[message["channel"]]
            sub.told.append(time.monotonic())
            if 2500 <= message.get("code", 0) < 3000:  # resubscribe at once with recover
                await self._subscribe(ws, message["channel"], sub, pending)
            return
        channel = pending.pop(message.get("id", -1), None)
        if channel is None:
            return
        sub = self.subs[channel]
        if "error" in message:
            if message["error"].get("temporary"):  # the broker is not back yet: ask again
                await asyncio.sleep(random.uniform(0.1, 0.3))
                await self._subscribe(ws, channel, sub, pending)
                return
            raise RuntimeError(f"subscribe {channel} refused: {message['error']}")
        result = message["result"]
        if result.get("recovered") is False:
            sub.not_recovered.append(time.monotonic())
        elif result.get("recovered"):
            sub.recovered += 1
        sub.epoch = result["epoch"]
        for pub in result.get("publications", ()):
            sub.got.add((sub.epoch, pub["offset"]))
        sub.offset = result["offset"]
        if not pending:
            self.connected_to = url
            self.ready.set()
            self.ready_at.append(time.monotonic())


@dataclass
class Attempt:
    at: float
    seconds: float
    status: int
    offset: int = 0
    epoch: str = ""
    delayed: bool = False


class Publisher:
    """``rate`` publications a second to ``channel`` through the HTTP API of ``urls`` in turn."""

    def __init__(self, urls: list[str], channel: str, rate: float) -> None:
        self.urls, self.channel, self.rate = urls, channel, rate
        self.attempts: list[Attempt] = []

    @property
    def acknowledged(self) -> set[tuple[str, int]]:
        return {(a.epoch, a.offset) for a in self.attempts if a.status == 200}

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            n = 0
            started = time.monotonic()
            while not stop.is_set():
                body = {"channel": self.channel, "data": {"n": n}, "idempotency_key": f"p{n}"}
                for i in range(len(self.urls)):  # a node that is gone: the same publication on the next one
                    url = self.urls[(n + i) % len(self.urls)]
                    sent = time.monotonic()
                    try:
                        async with http.post(f"{url}/api/publish", json=body) as r:
                            reply = await r.json()
                            self.attempts.append(Attempt(sent, time.monotonic() - sent, r.status,
                                                         reply.get("offset", 0), reply.get("epoch", ""),
                                                         bool(reply.get("delayed"))))
                        break
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        self.attempts.append(Attempt(sent, time.monotonic() - sent, 0))
                n += 1
                await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))


def http_url(node: ServerProcess) -> str:
    return f"http://{HOST}:{node.port}"


def ws_url(node: ServerProcess) -> str:
    return f"ws://{HOST}:{node.port}/ws"


async def wait_all(subscribers: list[Subscriber], condition: Callable[[Subscriber], bool], timeout: float) -> float | None:
    """Seconds until ``condition`` holds for every subscriber; None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(condition(s) for s in subscribers):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


def spread(times: list[float | None], since: float) -> dict[str, float] | None:
    """Median and maximum of ``times`` after ``since``, in seconds."""
    seconds = sorted(t - since for t in times if t is not None)
    if not seconds:
        return None
    return {"p50": round(seconds[len(seconds) // 2], 2), "max": round(seconds[-1], 2)}
