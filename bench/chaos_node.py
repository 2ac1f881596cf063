"""Chaos: one of two nodes SIGKILLed under load; its clients fail over to the other one.

Starts a ``redis-server`` of its own and two server processes on it.
``--subscribers`` clients (:class:`bench.chaos.Subscriber`), half on each node,
each with the other node second in its failover list, subscribe to
``pres:stream`` (presence on, Redis history) and ``dur:stream``
(``persist = true``); one publisher per channel publishes ``--rate`` a second
through the HTTP API of both nodes in turn. After ``--before`` seconds node A
is SIGKILLed; the run goes on for ``--after`` seconds after every client is
back.

It reports:

* ``full_recovery_s``: from the kill until every client of A is subscribed
  on B again and has had a live publication of both channels there;
* ``lost``: acknowledged publications some client never got (must be 0),
  and how many resubscriptions recovered (``recovered: true``) or not;
* ``presence_clean_s``: from the kill until ``presence_stats`` on B counts
  only the clients that are connected, against the documented bound: a dead
  node's entries expire within ``presence_ttl`` (``--presence-ttl``).

Usage::

    python -m bench.chaos_node --subscribers 1000 --presence-ttl 6     # make chaos

127.0.0.1 only, bounded in time, stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import orjson
import websockets

from bench.chaos import (
    Publisher,
    RedisServer,
    Subscriber,
    http_url,
    kill_node,
    spread,
    start_nodes,
    wait_all,
    ws_url,
)
from bench.fanout import get_token, own_cpu
from server.cli.serve import raise_open_files_limit

PRESENCE, DURABLE = "pres:stream", "dur:stream"


class PresenceWatch:
    """``presence_stats`` of ``pres:stream`` on one node, asked every 0.1 s."""

    def __init__(self, url: str, token: str, live: Callable[[], int]) -> None:
        self.url, self.token, self.live = url, token, live
        # (when, clients presence counts, clients subscribed here as far as they know)
        self.samples: list[tuple[float, int, int]] = []

    async def run(self, stop: asyncio.Event) -> None:
        async with websockets.connect(self.url, subprotocols=["stagewire.json"]) as ws:
            await ws.send(orjson.dumps({"id": 1, "type": "connect", "token": self.token}).decode())
            n = 1
            while not stop.is_set():
                n += 1
                live = self.live()  # before the question: a client subscribed meanwhile is counted by both
                await ws.send(orjson.dumps({"id": n, "type": "presence_stats", "channel": PRESENCE}).decode())
                while True:
                    reply = orjson.loads(str(await ws.recv()).split("\n")[0])
                    if reply.get("id") == n:
                        break
                if "result" in reply:
                    self.samples.append((time.monotonic(), int(reply["result"]["clients"]), live))
                await asyncio.sleep(0.1)


async def main_async(args: argparse.Namespace) -> dict:
    raise_open_files_limit()
    directory = Path(tempfile.mkdtemp(prefix="stagewire-chaos-node-"))
    redis = RedisServer(directory / "redis")
    await redis.start()
    env = {
        "STAGEWIRE_BROKER__PRESENCE_TTL": str(args.presence_ttl),
        "STAGEWIRE_NAMESPACES__PRES__PRESENCE": "true", "STAGEWIRE_NAMESPACES__PRES__PUBLISH": "server",
        "STAGEWIRE_NAMESPACES__PRES__HISTORY_SIZE": "1000",
        "STAGEWIRE_NAMESPACES__DUR__PERSIST": "true", "STAGEWIRE_NAMESPACES__DUR__PUBLISH": "server",
    }
    nodes = await start_nodes(directory, redis.url, 2, env)
    a, b = nodes
    stop_clients, stop_publishing = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    cpu_started = own_cpu()
    try:
        tokens = [await get_token(a.port, f"chaos{i}") for i in range(10)]
        subscribers = [Subscriber([ws_url(nodes[i % 2]), ws_url(nodes[1 - i % 2])], tokens[i % 10],
                                  [PRESENCE, DURABLE]) for i in range(args.subscribers)]
        tasks += [asyncio.create_task(s.run(stop_clients)) for s in subscribers]
        if await wait_all(subscribers, lambda s: s.ready.is_set(), 120) is None:
            raise SystemExit("subscribers did not all subscribe")
        watch = PresenceWatch(ws_url(b), tokens[0], lambda: sum(
            1 for s in subscribers if s.connected_to == ws_url(b) and s.ready.is_set()))
        watcher = asyncio.create_task(watch.run(stop_clients))
        publishers = [Publisher([http_url(n) for n in nodes], ch, args.rate) for ch in (PRESENCE, DURABLE)]
        publishing = [asyncio.create_task(p.run(stop_publishing)) for p in publishers]
        await asyncio.sleep(args.before)

        on_a = [s for s in subscribers if s.connected_to == ws_url(a)]
        kill_node(a)
        killed = time.monotonic()
        recovered = await wait_all(
            on_a, lambda s: s.connected_to == ws_url(b) and all(sub.last_live > killed for sub in s.subs.values()), 60)
        presence_clean = await wait_presence(watch, killed, args.presence_ttl * 2 + 5)
        await asyncio.sleep(args.after)
        stop_publishing.set()
        await asyncio.gather(*publishing)
        acked = {p.channel: p.acknowledged for p in publishers}
        drained = await wait_all(subscribers, lambda s: all(acked[ch] <= s.subs[ch].got for ch in acked), 30)
        stop_clients.set()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)
        b_cpu = b.cpu_seconds()
    finally:
        for task in tasks:
            task.cancel()
        for node in nodes:
            await node.stop()
        await redis.kill()

    report = {
        "subscribers": args.subscribers, "on_killed_node": len(on_a), "rate_per_channel": args.rate,
        "full_recovery_s": None if recovered is None else round(recovered, 2),
        "lost": {ch: sum(len(acked[ch] - s.subs[ch].got) for s in subscribers) for ch in acked},
        "drained_s": None if drained is None else round(drained, 2),
        "resubscribed_recovered": sum(s.subs[ch].recovered for s in on_a for ch in acked),
        "resubscribed_not_recovered": sum(len(s.subs[ch].not_recovered) for s in subscribers for ch in acked),
        "skipped_offsets": sum(sub.skipped for s in subscribers for sub in s.subs.values()),
        "publishes_refused_by_dead_node": sum(1 for p in publishers for x in p.attempts if x.status == 0),
        "publish_errors": sum(1 for p in publishers for x in p.attempts if x.status not in (0, 200)),
        "presence_ttl_s": args.presence_ttl,
        "presence_clean_s": None if presence_clean is None else round(presence_clean, 2),
        "subscriber_errors": sum(len(s.errors) for s in subscribers),
        # From the kill: when A's clients were subscribed on B again, and had a live pub per channel.
        "after_kill_s": {
            "resubscribed": spread([t for s in on_a for t in s.ready_at if t > killed], killed),
            **{f"live_{ch}": spread([s.subs[ch].first_live_after(killed) for s in on_a], killed) for ch in acked},
        },
        "cpu_s": {"load_generator": round(own_cpu() - cpu_started, 1), "node_b": round(b_cpu, 1)},
    }
    report["ok"] = (recovered is not None and not any(report["lost"].values()) and presence_clean is not None
                    and presence_clean <= args.presence_ttl + 1)
    return report


async def wait_presence(watch: PresenceWatch, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until presence counts no client that B does not hold: A's entries are gone.

    An upper bound: a client whose subscribe is in flight is counted by presence
    before the bench knows it is subscribed.
    """
    while time.monotonic() - since < timeout:
        for at, count, live in watch.samples:
            if at > since and count <= live:
                return at - since
        await asyncio.sleep(0.05)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="publications per second per channel")
    parser.add_argument("--presence-ttl", type=float, default=6.0)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=3.0)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "chaos-node.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    raise SystemExit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
