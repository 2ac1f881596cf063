"""Node-level Redis scenarios of ``bench/redis_broker.py``: scale-out and a pub/sub blip under load.

Everything runs against a ``redis-server`` of its own (started here on a free
port, nothing on disk), so ``INFO cpu`` is this benchmark's Redis work alone
and ``CLIENT KILL TYPE pubsub`` touches nobody else.

``scale``: for each N, three scenarios with fresh ``python -m server``
processes, all with ``write_delay = 0``: the memory broker, 1 node + Redis,
2 nodes + Redis (subscribers split). One publisher keeps 16 publishes in
flight (one per frame, the next sent as each reply arrives) for a fixed time,
from a process of its own (:mod:`bench.publisher`), so that its replies do not
queue behind the subscribers' reads here; then every delivery must arrive.
The subscribers run in a C process of their own (:mod:`bench.subscribers`)
that only counts what it reads, so that on two cores the two nodes are not
starved by the generator; ``generator="python"`` keeps them in this process
(:mod:`bench.wsraw`), as before. Reported: deliveries/s, its ratio to the
memory broker and to one Redis node, server CPU per delivery, Redis CPU per
publication, messages per frame, and the cores each side used.

``blip``: 2 nodes + Redis, subscribers split, the same publisher; after a
while every pub/sub connection is killed (``CLIENT KILL TYPE pubsub``).
Every subscriber parses its publications: disconnects, missed and duplicated
offsets, and the time from the kill until each subscriber got a publication
published after it (live delivery resumed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import statistics
import tempfile
import time
from typing import Any

import orjson
from redis.asyncio import Redis

from bench.fanout import CHANNEL, HOST, ServerProcess, connect_client, connect_many, free_port, get_token, own_cpu
from bench.publisher import WINDOW, PublisherProcess, publish_window
from bench.subscribers import SubscriberSwarm
from bench.wsraw import RawWS
BLIP_HISTORY = 100_000  # the stream must cover what pub/sub misses while it reconnects


class PrivateRedis:
    """``redis-server`` on a free port, nothing on disk; its CPU from ``INFO cpu``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.proc = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", self.directory, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection((HOST, self.port), timeout=0.1):
                    return self
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    async def cpu(self) -> float:
        admin = Redis.from_url(self.url)
        try:
            info = await admin.info("cpu")
        finally:
            await admin.aclose()
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class TrackingWS(RawWS):
    """A subscriber that parses its publications: offsets seen, duplicates, arrival times."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offsets: set[int] = set()
        self.duplicates = 0
        self.first_after: dict[int, float] = {}  # watched offset -> arrival time of the first pub beyond it
        self.watch: int | None = None

    def _frame(self, opcode: int, payload: bytes) -> None:
        super()._frame(opcode, payload)
        if opcode != 0x1 or b'"pub"' not in payload:
            return
        for line in payload.split(b"\n"):
            if line.startswith(b'{"type":"pub"'):
                offset = orjson.loads(line)["offset"]
                if offset in self.offsets:
                    self.duplicates += 1
                self.offsets.add(offset)
                if self.watch is not None and offset > self.watch and self.watch not in self.first_after:
                    self.first_after[self.watch] = time.perf_counter()


async def tracking_client(port: int, token: str) -> TrackingWS:
    loop = asyncio.get_running_loop()
    _, ws = await loop.create_connection(lambda: TrackingWS("/ws", f"{HOST}:{port}"), HOST, port)
    await ws.opened
    reply = await ws.call({"id": 1, "type": "connect", "token": token})
    if "result" not in reply:
        raise RuntimeError(f"connect failed: {reply}")
    return ws


async def start_servers(tmp: str, count: int, env: dict[str, str]) -> list[ServerProcess]:
    servers = []
    for _ in range(count):  # one after the other: the first applies the migrations
        servers.append(ServerProcess(tmp, free_port(), {"STAGEWIRE_CLIENT__WRITE_DELAY": "0", **env}))
        await servers[-1].start()
    return servers


async def split_subscribers(servers: list[ServerProcess], token: str, n: int, tracking: bool = False) -> list[Any]:
    subs: list[Any] = []
    for i, server in enumerate(servers):
        share = n // len(servers) + (1 if i < n % len(servers) else 0)
        if tracking:
            subs += [await tracking_client(server.port, token) for _ in range(share)]
        else:
            subs += (await connect_many(server.port, token, share))[0]
    await asyncio.gather(*(c.call({"id": 2, "type": "subscribe", "channel": CHANNEL}) for c in subs))
    return subs


def redis_env(url: str) -> dict[str, str]:
    return {"STAGEWIRE_BROKER__BACKEND": "redis", "STAGEWIRE_BROKER__REDIS_URL": url,
            "STAGEWIRE_BROKER__PREFIX": "swbench"}


class PythonSubscribers:
    """The subscribers in this process (``bench/wsraw.py``): counted here, on this process's CPU."""

    def __init__(self, subs: list[Any]) -> None:
        self.subs = subs

    async def count(self) -> dict[str, int]:
        messages = sum(c.messages for c in self.subs)
        # Every message after the connect and subscribe replies (a server ping push would count too).
        return {"messages": messages, "pubs": messages - 2 * len(self.subs),
                "frames": sum(c.frames for c in self.subs), "closed": sum(1 for c in self.subs if c.closed.done())}

    def cpu_seconds(self) -> float:
        return own_cpu()

    def close(self) -> None:
        for c in self.subs:
            if c.transport:
                c.transport.close()


async def scale_scenario(label: str, n: int, nodes: int, redis: PrivateRedis | None, seconds: float,
                         generator: str = "c") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        servers = await start_servers(tmp, nodes, redis_env(redis.url) if redis else {})
        try:
            token = await get_token(servers[0].port, "bench")
            async with contextlib.AsyncExitStack() as stack:
                if generator == "c":
                    shares = [n // nodes + (1 if i < n % nodes else 0) for i in range(nodes)]
                    subs: Any = await stack.enter_async_context(
                        SubscriberSwarm(HOST, [s.port for s in servers], shares, token, CHANNEL))
                else:
                    subs = PythonSubscribers(await split_subscribers(servers, token, n))
                    stack.callback(subs.close)
                return await _measure_scale(label, n, servers, redis, subs, token, seconds, generator)
        finally:
            for server in servers:
                await server.stop()


async def _measure_scale(label: str, n: int, servers: list[ServerProcess], redis: PrivateRedis | None,
                         subs: Any, token: str, seconds: float, generator: str) -> dict:
    async with PublisherProcess(servers[0].port, token, CHANNEL, WINDOW) as publisher:
        warm = (await publisher.run(0.5))["published"]  # warm-up
        while (await subs.count())["pubs"] < warm * n:
            await asyncio.sleep(0.01)
        base = await subs.count()
        cpu_server = sum(s.cpu_seconds() for s in servers)
        cpu_redis = await redis.cpu() if redis else 0.0
        cpu_generator = subs.cpu_seconds()
        started = time.perf_counter()
        run = await publisher.run(seconds)
    published = run["published"]
    deadline = time.perf_counter() + 60
    while (now := await subs.count())["pubs"] - base["pubs"] < published * n and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    delivered = now["pubs"] - base["pubs"]
    server_cpu = sum(s.cpu_seconds() for s in servers) - cpu_server
    result = {
        "scenario": label, "subscribers": n, "generator": generator, "publications": published,
        "deliveries": delivered, "lost": published * n - delivered, "seconds": round(elapsed, 2),
        "deliveries_per_s": round(delivered / elapsed),
        "server_cpu_us_per_delivery": round(server_cpu / max(1, delivered) * 1e6, 2),
        "messages_per_frame": round((now["messages"] - base["messages"]) / max(1, now["frames"] - base["frames"]), 1),
        "closed": now["closed"],
        # Cores the subscribers' side used: near 1, it (not the server) is the limit.
        "loadgen_cores": round((subs.cpu_seconds() - cpu_generator) / elapsed, 2),
        "publisher_cores": round(run["cpu_s"] / elapsed, 2),
        "server_cores": round(server_cpu / elapsed, 2),
    }
    if redis is not None:
        result["redis_cpu_us_per_publication"] = round(
            (await redis.cpu() - cpu_redis) / max(1, published) * 1e6, 1)
    return result


async def scale(subscribers: list[int], seconds: float, generator: str = "c") -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in subscribers:
            memory = await scale_scenario("memory broker", n, 1, None, seconds, generator)
            async with PrivateRedis(tmp) as redis:
                one = await scale_scenario("1 node + Redis", n, 1, redis, seconds, generator)
            async with PrivateRedis(tmp) as redis:
                two = await scale_scenario("2 nodes + Redis", n, 2, redis, seconds, generator)
            one["vs_memory"] = round(one["deliveries_per_s"] / memory["deliveries_per_s"], 2)
            two["vs_memory"] = round(two["deliveries_per_s"] / memory["deliveries_per_s"], 2)
            two["vs_one_node"] = round(two["deliveries_per_s"] / one["deliveries_per_s"], 2)
            for r in (memory, one, two):
                print(orjson.dumps(r).decode(), flush=True)
            results += [memory, one, two]
    return results


async def blip(n: int, seconds: float, kill_after: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        async with PrivateRedis(tmp) as redis:
            env = {**redis_env(redis.url), "STAGEWIRE_NAMESPACES__BENCH__HISTORY_SIZE": str(BLIP_HISTORY)}
            servers = await start_servers(tmp, 2, env)
            try:
                token = await get_token(servers[0].port, "bench")
                subs: list[TrackingWS] = await split_subscribers(servers, token, n, tracking=True)
                publisher = await connect_client(servers[0].port, token)
                tops: list[int] = []
                run = asyncio.create_task(publish_window(publisher, CHANNEL, seconds, WINDOW, itertools.count(100), tops))
                await asyncio.sleep(kill_after)
                watch = max(tops)  # published (acknowledged) before the kill
                for c in subs:
                    c.watch = watch
                admin = Redis.from_url(redis.url)
                killed_at = time.perf_counter()
                killed = await admin.client_kill_filter(_type="pubsub")
                await admin.aclose()
                published = await run
                top = max(tops)
                deadline = time.perf_counter() + 60
                while any(len(c.offsets) < top for c in subs) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.01)
                resumed = [c.first_after[watch] - killed_at for c in subs if watch in c.first_after]
                counts = {}
                for server in servers:
                    counts.update(await metrics(server.port))
                return {
                    "subscribers": n, "publications": published, "pubsub_connections_killed": killed,
                    "disconnects": sum(1 for c in subs if c.closed.done()),
                    "missed": sum(len(set(range(1, top + 1)) - c.offsets) for c in subs),
                    "duplicates": sum(c.duplicates for c in subs),
                    "resume_ms_median": round(statistics.median(resumed) * 1000, 1) if resumed else None,
                    "resume_ms_max": round(max(resumed) * 1000, 1) if resumed else None,
                    **counts,
                }
            finally:
                for server in servers:
                    await server.stop()


async def metrics(port: int) -> dict[str, float]:
    import aiohttp

    wanted = ("stagewire_gap_fills_total", "stagewire_gap_filled_publications_total", "stagewire_stream_resets_total")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{port}/metrics") as r:
            text = await r.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            found[name.removeprefix("stagewire_").removesuffix("_total") + f"@{port}"] = float(value)
    return found


def cpu_note() -> str:
    return f"load generator CPU so far: {own_cpu():.1f} s; cores: {os.cpu_count()}"
