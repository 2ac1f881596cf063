"""Scale-out fan-out benchmark: subscribers split across two server instances and one Redis.

For each N (subscribers in total, all on one channel) it runs three scenarios,
each with fresh ``python -m server`` processes on free 127.0.0.1 ports:

* ``1 node, memory``: one instance, the memory broker (as ``bench/fanout.py``),
* ``1 node, redis``: one instance, the redis broker,
* ``2 nodes, redis``: two instances sharing Redis, N/2 subscribers on each,

and reports deliveries/s (``--publishers`` connections, spread over the
instances like the subscribers, each pipeline publishes for a fixed time, then
every delivery must arrive), p50/p99 latency at 20 publications/s from the
first publisher, the CPU of the server processes and of this load generator,
and Redis CPU (``INFO cpu`` used_cpu_sys + used_cpu_user before/after the
throughput phase) per 1k deliveries and per 1k publications. Redis CPU counts every client's
load: point ``--url`` at a Redis of its own for clean figures.

A publisher sends ``--batch`` publishes per WebSocket frame. With the memory
broker its publications reach the subscribers within one event-loop tick and
leave in one write per subscriber. Through Redis a node handles one
connection's publishes one after the other, each a round trip, so a lone
publisher's publications arrive one by one; several publishers
(``--publishers``) keep several in flight. ``messages/frame`` reports what the
subscribers actually got per frame (per write).

Usage::

    python -m bench.cluster_fanout --subscribers 1000 5000 --seconds 5 [--batch 1] [--publishers 8]

It only talks to 127.0.0.1, uses its own Redis key prefix per scenario,
deletes those keys at the end, and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis

from bench.fanout import (
    ServerProcess,
    connect_client,
    connect_many,
    free_port,
    get_token,
    latency,
    max_throughput,
    own_cpu,
    subscribe_all,
)
from bench.wsraw import RawWS
from bench.redis_broker import LOCAL_HOSTS, redis_cpu
from server.cli.serve import raise_open_files_limit

SCENARIOS = (("1 node, memory", 1, False), ("1 node, redis", 1, True), ("2 nodes, redis", 2, True))


class Instances:
    """Several server processes read as one by ``max_throughput`` (their CPU summed)."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def rss_bytes(self) -> int:
        return sum(server.rss_bytes() for server in self.servers)


async def throughput(group: Instances, publishers: list[RawWS], subs: list[RawWS], seconds: float,
                     batch: int) -> dict:
    """``max_throughput`` from every publisher at once, with totals counted around the calls.

    Each call pipelines its own publications; with several publishers every
    call also sees the others' deliveries, so the totals are counted here.
    """
    if len(publishers) == 1:
        return await max_throughput(group, publishers[0], subs, seconds, batch=batch)
    base = sum(c.messages for c in subs)
    cpu_server, cpu_self = group.cpu_seconds(), own_cpu()
    started = time.perf_counter()
    runs = await asyncio.gather(*(max_throughput(group, p, subs, seconds, batch=batch) for p in publishers))
    published = sum(run["publications"] for run in runs)
    deadline = time.perf_counter() + 60
    while sum(c.messages for c in subs) - base < published * len(subs) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    delivered = sum(c.messages for c in subs) - base
    return {
        "publications": published,
        "deliveries": delivered,
        "lost": published * len(subs) - delivered,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(delivered / elapsed),
        "server_cpu": round((group.cpu_seconds() - cpu_server) / elapsed, 2),
        "loadgen_cpu": round((own_cpu() - cpu_self) / elapsed, 2),
    }


async def run_scenario(label: str, n: int, instances: int, redis_url: str | None, seconds: float,
                       batch: int, publishers: int) -> dict:
    prefix = f"swbench-{secrets.token_hex(4)}"
    env = {}
    if redis_url is not None:
        env = {"STAGEWIRE_BROKER__BACKEND": "redis", "STAGEWIRE_BROKER__REDIS_URL": redis_url,
               "STAGEWIRE_BROKER__PREFIX": prefix}
    admin = Redis.from_url(redis_url) if redis_url is not None else None
    servers: list[ServerProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for _ in range(instances):
                # One after the other: the first applies the migrations and writes
                # the token secret that the others then read from the shared tmp dir.
                servers.append(ServerProcess(tmp, free_port(), env))
                await servers[-1].start()
            group = Instances(servers)
            token = await get_token(servers[0].port, "bench")
            rss_before = group.rss_bytes()
            subs, connect_time = [], 0.0
            for i, server in enumerate(servers):
                share = n // instances + (1 if i < n % instances else 0)
                clients, elapsed = await connect_many(server.port, token, share)
                subs += clients
                connect_time += elapsed
            await asyncio.sleep(0.5)  # let the allocators settle before reading RSS
            rss_per_conn = (group.rss_bytes() - rss_before) / n
            await subscribe_all(subs)
            # Publishers spread over the instances like the subscribers; the first one measures latency.
            pubs = [await connect_client(servers[i % instances].port, token) for i in range(publishers)]

            redis_before = await redis_cpu(admin) if admin is not None else 0.0
            frames_before, messages_before = sum(c.frames for c in subs), sum(c.messages for c in subs)
            measured = await throughput(group, pubs, subs, seconds, batch)
            redis_seconds = (await redis_cpu(admin) - redis_before) if admin is not None else None
            frames = sum(c.frames for c in subs) - frames_before
            messages = sum(c.messages for c in subs) - messages_before
            result = {
                "scenario": label,
                "subscribers": n,
                "batch": batch,
                "publishers": publishers,
                "connects_per_s": round(n / connect_time),
                "rss_per_conn_kib": round(rss_per_conn / 1024, 1),
                "throughput": measured,
                # How many publications a subscriber got per WebSocket frame (one write).
                "messages_per_frame": round(messages / max(1, frames), 1),
                "server_cpu_us_per_delivery": round(
                    measured["server_cpu"] * measured["seconds"] / max(1, measured["deliveries"]) * 1e6, 2),
                "latency_20hz": await latency(pubs[0], subs, 20.0, min(seconds, 5.0)),
                "closed_early": sum(1 for c in subs if c.closed.done()),
            }
            if redis_seconds is not None:
                result["redis_cpu_ms_per_1k_deliveries"] = round(
                    redis_seconds * 1000 / max(1, measured["deliveries"]) * 1000, 3)
                result["redis_cpu_ms_per_1k_publications"] = round(
                    redis_seconds * 1000 / max(1, measured["publications"]) * 1000, 1)
            for client in (*subs, *pubs):
                if client.transport:
                    client.transport.close()
            return result
        finally:
            for server in servers:
                await server.stop()
            if admin is not None:
                keys = [key async for key in admin.scan_iter(match=f"{prefix}.*", count=1000)]
                if keys:
                    await admin.delete(*keys)
                await admin.aclose()


def table(results: list[dict]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| subscribers | publishers | scenario | deliveries/s | p50 ms | p99 ms | server CPU (cores) | server µs/delivery "
        "| messages/frame | Redis CPU ms/1k deliveries | Redis CPU ms/1k publications |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t, lat = r["throughput"], r["latency_20hz"]
        lines.append(
            f"| {r['subscribers']} | {r['publishers']} | {r['scenario']} | {t['deliveries_per_s']:,} | {lat['p50_ms']} | {lat['p99_ms']} "
            f"| {t['server_cpu']} | {r['server_cpu_us_per_delivery']} | {r['messages_per_frame']} "
            f"| {r.get('redis_cpu_ms_per_1k_deliveries', '–')} | {r.get('redis_cpu_ms_per_1k_publications', '–')} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    raise_open_files_limit()
    results = []
    for n in args.subscribers:
        for label, instances, uses_redis in SCENARIOS:
            result = await run_scenario(label, n, instances, args.url if uses_redis else None, args.seconds,
                                        args.batch, args.publishers)
            results.append(result)
            print(json.dumps(result), flush=True)
    print(table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000], help="in total, per run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the max-throughput phase")
    parser.add_argument("--batch", type=int, default=50,
                        help="publishes per WebSocket frame in the throughput phase")
    parser.add_argument("--publishers", type=int, default=1,
                        help="publishing connections, spread over the instances, each pipelining")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="a Redis on this machine")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOCAL_HOSTS:
        parser.error("this benchmark only targets a Redis on 127.0.0.1")
    if (any(not 2 <= n <= 20_000 for n in args.subscribers) or not 0 < args.seconds <= 30
            or not 1 <= args.batch <= 500 or not 1 <= args.publishers <= 64):
        parser.error("--subscribers must be 2..20000, --seconds at most 30, --batch 1..500, --publishers 1..64")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
