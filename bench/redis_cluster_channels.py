"""Channels per shard on Redis Cluster: what holding N channels costs, and what a move does.

Starts a three-master Redis Cluster of its own on loopback (the test
fixture's :class:`tests.private_cluster.PrivateCluster`: nothing on disk, gone
at the end) and one ``RedisBroker`` with ``cluster_nodes`` (one node). For
each N it reports:

* the time to subscribe N channels (in parallel, as N first subscribers
  arriving at once; each master gets one SSUBSCRIBE per slot per batch),
* shard channels per master (``PUBSUB SHARDNUMSUB`` over ``PUBSUB
  SHARDCHANNELS``) and the masters' memory growth per held channel
  (``INFO memory`` used_memory, before/after),
* the time to get every channel back after the node's pub/sub connections
  are killed (``CLIENT KILL ID`` of each): reconnect, one SSUBSCRIBE per slot,
  confirmation of all,
* the time one slot takes to move (keys migrated, SETSLOT) and until its
  channels are subscribed on the new master and reported as a gap.

Usage::

    python -m bench.redis_cluster_channels --channels 1000 10000 50000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from redis.crc import key_slot

from server.broker.base import Publication
from server.broker.redis import RedisBroker
from server.broker.redis_client import RedisClient
from server.config import BrokerSettings
from tests.private_cluster import PrivateCluster


class GapCounter:
    """A BrokerHandler that only counts gap reports."""

    def __init__(self) -> None:
        self.gaps: list[str] = []
        self.changed = asyncio.Event()

    def on_publication(self, pub: Publication) -> None:
        pass

    def on_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        pass

    def on_control(self, message: dict[str, Any]) -> None:
        pass

    def on_control_gap(self) -> None:
        pass

    def on_gap(self, channels: Sequence[str]) -> None:
        self.gaps.extend(channels)
        self.changed.set()

    async def wait(self, count: int, timeout: float = 60.0) -> None:
        async def poll() -> None:
            while len(self.gaps) < count:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(poll(), timeout)


async def used_memory(cluster: PrivateCluster) -> list[int]:
    out = []
    for port in cluster.ports:
        async with cluster.client(port) as client:
            out.append(int((await client.info("memory"))["used_memory"]))
    return out


async def shard_channels(cluster: PrivateCluster, prefix: str) -> list[int]:
    out = []
    for port in cluster.ports:
        async with cluster.client(port) as client:
            names = await client.execute_command("PUBSUB", "SHARDCHANNELS", f"{prefix}.pub.*")
            out.append(len(names))
    return out


async def kill_pubsub(cluster: PrivateCluster, name: str) -> int:
    killed = 0
    for port in cluster.ports:
        async with cluster.client(port) as client:
            for entry in await client.client_list(_type="pubsub"):
                if entry.get("name") == name:
                    await client.client_kill_filter(_id=entry["id"])
                    killed += 1
    return killed


async def wait_healthy(broker: RedisBroker, timeout: float = 60.0) -> None:
    async def poll() -> None:
        while not broker.healthy:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def run(n: int, cluster: PrivateCluster) -> dict[str, Any]:
    prefix = f"bench-{secrets.token_hex(3)}"
    settings = BrokerSettings(backend="redis", cluster_nodes=(cluster.nodes[0],), prefix=prefix,
                              socket_timeout=10.0, reconnect_min_delay=0.01, reconnect_max_delay=0.5)
    client = RedisClient(settings)
    handler = GapCounter()
    broker = RedisBroker(client)
    await broker.start(handler)
    channels = [f"bench:ch{i}" for i in range(n)]
    try:
        memory_before = await used_memory(cluster)
        started = time.perf_counter()
        await asyncio.gather(*(broker.subscribe(c) for c in channels))
        subscribe_s = time.perf_counter() - started
        per_master = await shard_channels(cluster, prefix)
        memory_after = await used_memory(cluster)
        bytes_per_channel = (sum(memory_after) - sum(memory_before)) / n

        killed = await kill_pubsub(cluster, client.name)
        started = time.perf_counter()
        await handler.wait(n)  # every channel reported once it is held again
        await wait_healthy(broker)
        resubscribe_s = time.perf_counter() - started

        # One slot with channels in it, moved to another master.
        slots = Counter(key_slot(f"{prefix}.pub.{{{c}}}".encode()) for c in channels)
        slot, in_slot = slots.most_common(1)[0]
        source = await cluster.owner(slot)
        target = next(port for port in cluster.ports if port != source)
        handler.gaps.clear()
        started = time.perf_counter()
        await cluster.move_slot(slot, target)
        moved_s = time.perf_counter() - started
        await handler.wait(in_slot)
        await wait_healthy(broker)
        follow_s = time.perf_counter() - started
        await cluster.move_slot(slot, source)
        return {
            "n": n, "subscribe_s": subscribe_s, "per_master": per_master, "bytes_per_channel": bytes_per_channel,
            "killed": killed, "resubscribe_s": resubscribe_s, "slot_channels": in_slot,
            "move_s": moved_s, "follow_s": follow_s,
        }
    finally:
        await broker.close()
        await client.close()


async def main_async(counts: list[int]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="stagewire-bench-cluster-"))
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise SystemExit("redis-server and redis-cli are needed")
    cluster = PrivateCluster(directory, server, cli)
    cluster.start()
    try:
        print("| channels | subscribe all | channels per master | Redis memory per channel | "
              "pub/sub connections killed: all held again | one slot moved (channels) | move / held on the new master |")
        print("|---|---|---|---|---|---|---|")
        for n in counts:
            r = await run(n, cluster)
            print(f"| {r['n']:,} | {r['subscribe_s'] * 1000:,.0f} ms | {' / '.join(f'{c:,}' for c in r['per_master'])} "
                  f"| {r['bytes_per_channel']:,.0f} B | {r['killed']} connections: {r['resubscribe_s'] * 1000:,.0f} ms "
                  f"| {r['slot_channels']} | {r['move_s'] * 1000:,.0f} ms / {r['follow_s'] * 1000:,.0f} ms |",
                  flush=True)
    finally:
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[1000, 10000, 50000])
    args = parser.parse_args()
    asyncio.run(main_async(args.channels))


if __name__ == "__main__":
    main()
