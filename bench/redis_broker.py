"""Redis broker micro-benchmark: publications/s through ``RedisBroker.publish``.

Two brokers share the local Redis, like two nodes: one publishes, the other is
subscribed to the channel and counts deliveries. For each concurrency (how
many ``publish`` calls are in flight at once) it publishes ``--count``
publications and reports:

* publications/s (from the first publish until the last delivery arrived),
* p50/p99 latency of one ``publish`` call,
* Redis CPU (``INFO cpu`` used_cpu_sys + used_cpu_user, before/after) per 1k
  publications. Redis is shared: other clients' load counts too.

Usage::

    python -m bench.redis_broker --count 20000 --concurrency 1 64
    python -m bench.redis_broker scale --subscribers 1000 5000 --seconds 5
    python -m bench.redis_broker scale --subscribers 1000 5000 --seconds 5 --generator python
    python -m bench.redis_broker blip --subscribers 1000 --seconds 6 --kill-after 2

``scale`` and ``blip`` run whole server processes on a ``redis-server`` of
their own (see :mod:`bench.redis_scale`): memory broker vs 1 node + Redis vs
2 nodes + Redis, and ``CLIENT KILL TYPE pubsub`` under load.

It only talks to Redis on 127.0.0.1, uses its own key prefix, deletes its keys
at the end, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from typing import Any, Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis

from server.broker.base import HistoryOptions, Publication
from server.broker.redis_client import RedisClient
from server.broker.redis import RedisBroker
from server.config import BrokerSettings

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CHANNEL = "bench:redis-broker"
HISTORY = HistoryOptions(size=100, ttl=300.0)


class CountingHandler:
    """A BrokerHandler that counts deliveries and wakes the benchmark at a target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def on_publication(self, pub: Publication) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def on_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        pass

    def on_control(self, message: dict[str, Any]) -> None:
        pass

    def on_gap(self, channels: Sequence[str]) -> None:
        print(f"warning: gap reported for {list(channels)}", file=sys.stderr)

    def on_control_gap(self) -> None:
        print("warning: control messages may have been missed", file=sys.stderr)


async def redis_cpu(admin: Redis) -> float:
    info = await admin.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def run(publisher: RedisBroker, handler: CountingHandler, admin: Redis,
              count: int, concurrency: int) -> dict[str, float]:
    handler.count, handler.target = 0, count
    handler.done.clear()
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            await publisher.publish(CHANNEL, {"text": "hello", "n": i}, info={"user": "bench"}, history=HISTORY)
            latencies.append(time.perf_counter() - started)

    cpu_before = await redis_cpu(admin)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await asyncio.wait_for(handler.done.wait(), 30)
    elapsed = time.perf_counter() - started
    cpu_after = await redis_cpu(admin)
    latencies.sort()
    return {
        "pubs_per_s": count / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "redis_cpu_ms_per_1k": (cpu_after - cpu_before) * 1000 / (count / 1000),
        "seconds": elapsed,
    }


async def main_async(args: argparse.Namespace) -> None:
    prefix = f"swbench-{secrets.token_hex(4)}"
    settings = BrokerSettings(backend="redis", redis_url=args.url, prefix=prefix, sharded_pubsub=args.sharded)
    subscriber_handler, publisher_handler = CountingHandler(), CountingHandler()
    clients = RedisClient(settings), RedisClient(settings)  # two nodes, a pool each
    subscriber, publisher = RedisBroker(clients[0]), RedisBroker(clients[1])
    admin = Redis.from_url(args.url)
    try:
        await subscriber.start(subscriber_handler)
        await publisher.start(publisher_handler)
        await subscriber.subscribe(CHANNEL)
        mode = "sharded pub/sub" if args.sharded else "pub/sub"
        print(f"RedisBroker.publish, {args.count} publications per run, 1 subscribed node, {mode}")
        print(f"{'in flight':>9} {'pubs/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'Redis CPU ms/1k pubs':>21}")
        for concurrency in args.concurrency:
            r = await run(publisher, subscriber_handler, admin, args.count, concurrency)
            print(f"{concurrency:>9} {r['pubs_per_s']:>9.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f}"
                  f" {r['redis_cpu_ms_per_1k']:>21.1f}")
    finally:
        await publisher.close()
        await subscriber.close()
        for client in clients:
            await client.close()
        keys = [key async for key in admin.scan_iter(match=f"{prefix}.*", count=1000)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("scale", "blip"):
        return node_scenarios(sys.argv[1], sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="a Redis on this machine")
    parser.add_argument("--count", type=int, default=20_000, help="publications per run (at most 200000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64], help="publish calls in flight")
    parser.add_argument("--sharded", action="store_true", help="use SSUBSCRIBE/SPUBLISH")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOCAL_HOSTS:
        parser.error("this benchmark only targets a Redis on 127.0.0.1")
    if not 0 < args.count <= 200_000 or any(c < 1 or c > 1000 for c in args.concurrency):
        parser.error("--count must be 1..200000 and --concurrency 1..1000")
    asyncio.run(main_async(args))


def node_scenarios(mode: str, argv: list[str]) -> None:
    from bench import redis_scale
    from server.cli.serve import raise_open_files_limit

    parser = argparse.ArgumentParser(prog=f"bench.redis_broker {mode}", description=redis_scale.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000] if mode == "scale" else [1000])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the publisher publishes")
    parser.add_argument("--kill-after", type=float, default=2.0, help="blip: seconds of load before the kill")
    parser.add_argument("--generator", choices=("c", "python"), default="c",
                        help="scale: the subscribers in a C process of their own (bench/subscribers.c, built "
                             "with cc; the default), or in this process (bench/wsraw.py)")
    args = parser.parse_args(argv)
    if any(not 2 <= n <= 20_000 for n in args.subscribers) or not 0 < args.seconds <= 30:
        parser.error("--subscribers must be 2..20000 and --seconds at most 30")
    raise_open_files_limit()
    try:
        import uvloop

        uvloop.install()  # the load generator must not be the bottleneck
    except ImportError:
        pass
    if mode == "scale":
        asyncio.run(redis_scale.scale(args.subscribers, args.seconds, args.generator))
    else:
        for n in args.subscribers:
            print(json.dumps(asyncio.run(redis_scale.blip(n, args.seconds, args.kill_after))), flush=True)


if __name__ == "__main__":
    main()
