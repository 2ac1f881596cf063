"""Soak: connect, subscribe, publish and disconnect churn for a long time; nothing may grow.

Runs ``python -m server`` (memory broker by default, or ``--broker redis``
against the local Redis with a prefix of its own), then ``--workers``
clients loop for ``--minutes``: connect, subscribe to a few of ``--channels``
channels (half of them with presence and join/leave), publish, sometimes ask
for presence or history, and leave (a close frame, or a dropped socket).

Every ``--sample`` seconds the churn pauses until the server has no
connection left, and the server's numbers are read: RSS, open files, asyncio
tasks (from ``/metrics``), and in Redis mode the keys of its prefix that have
no TTL. After the warm-up (the first ``--warmup`` minutes) the last samples
are compared with the first ones: RSS must grow less than 5 %, and tasks,
open files and TTL-less Redis keys not at all.

Usage::

    python -m bench.soak --minutes 30                 # make soak
    python -m bench.soak --minutes 30 --broker redis

Bounded in time; exits 1 if something grew.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import orjson
import websockets
from redis.asyncio import Redis

from bench.fanout import HOST, ServerProcess, free_port, get_token
from server.cli.serve import raise_open_files_limit

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sample:
    minute: float
    rss_mib: float
    open_files: int
    tasks: int
    redis_keys_without_ttl: int
    cycles: int


async def metrics(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{port}/metrics") as r:
            text = await r.text()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class Churn:
    def __init__(self, port: int, tokens: list[str], channels: int) -> None:
        self.url = f"ws://{HOST}:{port}/ws"
        self.tokens = tokens
        self.channels = [f"{'chat' if i % 2 else 'news'}:soak-{i}" for i in range(channels)]
        self.running = asyncio.Event()
        self.running.set()
        self.cycles = 0
        self.errors: list[str] = []
        self.active = 0

    async def call(self, ws: websockets.ClientConnection, message_id: int, **command: object) -> dict:
        await ws.send(orjson.dumps({"id": message_id, **command}).decode())
        while True:
            for line in str(await asyncio.wait_for(ws.recv(), 10)).split("\n"):
                reply = orjson.loads(line)
                if reply.get("id") == message_id:
                    return dict(reply)

    async def worker(self, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            await self.running.wait()
            self.active += 1
            try:
                ws = await websockets.connect(self.url, subprotocols=["stagewire.json"], open_timeout=10)
                try:
                    await self.call(ws, 1, type="connect", token=rng.choice(self.tokens))
                    mine = rng.sample(self.channels, 3)
                    for i, channel in enumerate(mine):
                        await self.call(ws, 10 + i, type="subscribe", channel=channel)
                    for i in range(rng.randint(1, 3)):
                        await self.call(ws, 20 + i, type="publish", channel=mine[0] if mine[0].startswith("chat")
                                        else mine[1], data={"n": i, "pad": "x" * rng.randint(0, 500)})
                    if rng.random() < 0.3:
                        await self.call(ws, 30, type="history", channel=mine[0], limit=10)
                    if rng.random() < 0.3 and mine[0].startswith("chat"):
                        await self.call(ws, 31, type="presence", channel=mine[0])
                finally:
                    if rng.random() < 0.2:
                        ws.transport.abort()
                    else:
                        await ws.close()
                self.cycles += 1
            except Exception as exc:  # counted and reported; the soak goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self.active -= 1


async def redis_keys_without_ttl(redis: Redis | None, prefix: str) -> int:
    if redis is None:
        return 0
    count = 0
    async for key in redis.scan_iter(match=f"{prefix}.*", count=1000):
        if await redis.ttl(key) == -1:
            count += 1
    return count


async def main_async(args: argparse.Namespace) -> int:
    raise_open_files_limit()
    prefix = f"swsoak-{secrets.token_hex(4)}"
    env = {"STAGEWIRE_NAMESPACES__CHAT__PRESENCE": "true", "STAGEWIRE_NAMESPACES__CHAT__JOIN_LEAVE": "true",
           "STAGEWIRE_NAMESPACES__NEWS__PUBLISH": "client"}
    redis = None
    if args.broker == "redis":
        env |= {"STAGEWIRE_BROKER__BACKEND": "redis", "STAGEWIRE_BROKER__REDIS_URL": args.redis_url,
                "STAGEWIRE_BROKER__PREFIX": prefix}
        redis = Redis.from_url(args.redis_url)
    directory = tempfile.mkdtemp(prefix="stagewire-soak-")
    port = free_port()
    server = ServerProcess(directory, port, env)
    await server.start()
    samples: list[Sample] = []
    started = time.monotonic()
    try:
        tokens = [await get_token(port, f"soak{i}") for i in range(20)]
        churn = Churn(port, tokens, args.channels)
        deadline = started + args.minutes * 60
        workers = [asyncio.create_task(churn.worker(i, deadline)) for i in range(args.workers)]
        while time.monotonic() < deadline:
            await asyncio.sleep(min(args.sample, max(0.0, deadline - time.monotonic())))
            churn.running.clear()  # let the server drain: compare like with like
            while churn.active:
                await asyncio.sleep(0.05)
            for _ in range(100):
                figures = await metrics(port)
                if figures.get("stagewire_connections", 1) == 0:
                    break
                await asyncio.sleep(0.1)
            sample = Sample(
                minute=round((time.monotonic() - started) / 60, 2),
                rss_mib=round(server.rss_bytes() / 2**20, 1),
                open_files=int(figures.get("process_open_fds", 0)),
                tasks=int(figures.get("stagewire_tasks", 0)),
                redis_keys_without_ttl=await redis_keys_without_ttl(redis, prefix),
                cycles=churn.cycles,
            )
            samples.append(sample)
            print(json.dumps(asdict(sample)), flush=True)
            churn.running.set()
        await asyncio.gather(*workers)
    finally:
        await server.stop()
        if redis is not None:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}.*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()
    steady = [s for s in samples if s.minute >= args.warmup] or samples
    first, last = steady[: max(1, len(steady) // 5)], steady[-max(1, len(steady) // 5):]

    def median(values: list[Sample], field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in values))

    growth = median(last, "rss_mib") / median(first, "rss_mib") - 1
    verdict = {
        "minutes": args.minutes, "broker": args.broker, "workers": args.workers,
        "cycles": samples[-1].cycles if samples else 0, "errors": len(churn.errors),
        "rss_mib_after_warmup": median(first, "rss_mib"), "rss_mib_at_end": median(last, "rss_mib"),
        "rss_growth_percent": round(growth * 100, 2),
        "open_files": [median(first, "open_files"), median(last, "open_files")],
        "tasks": [median(first, "tasks"), median(last, "tasks")],
        "redis_keys_without_ttl": [median(first, "redis_keys_without_ttl"), median(last, "redis_keys_without_ttl")],
    }
    ok = (growth < 0.05 and verdict["open_files"][1] <= verdict["open_files"][0]
          and verdict["tasks"][1] <= verdict["tasks"][0] and verdict["redis_keys_without_ttl"][1] == 0)
    verdict["ok"] = ok
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"soak-{args.broker}.json").write_text(json.dumps({"verdict": verdict, "samples": [asdict(s) for s in samples]}, indent=1))
    print(json.dumps(verdict))
    if churn.errors:
        print("first errors:", churn.errors[:5])
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes before the figures count")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--broker", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    raise SystemExit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
