"""Chaos: Redis SIGKILLed mid-stream and restarted empty, under two nodes and 1000 subscribers.

Starts a ``redis-server`` of its own (nothing on disk) and two server
processes on it. ``--subscribers`` clients (:class:`bench.chaos.Subscriber`,
half on each node) subscribe to ``dur:stream`` (``persist = true``) and
``live:stream`` (Redis history only), and one publisher per channel publishes
``--rate`` a second through the HTTP API, alternating between the nodes.
After ``--before`` seconds Redis is SIGKILLed, left dead for ``--outage``
seconds, started again empty, and the stream goes on for ``--after`` seconds.

It reports:

* ``durable_lost``: acknowledged ``dur:stream`` publications that some
  subscriber never got (must be 0: they come back from the database);
* ``live_not_recovered``: ``live:stream`` subscriptions told
  ``recovered: false`` (every one whose gap Redis forgot must be), and
  ``live_lost_silently``: acknowledged publications a subscriber missed
  without being told (must be 0);
* ``outage_failures``: publishes that failed while Redis was dead, by status,
  and the slowest failure (must stay under ``socket_timeout``);
* ``live_again_s``: from the restart until every subscriber had a live
  publication of both channels again.

Usage::

    python -m bench.chaos_redis --subscribers 1000      # make chaos

127.0.0.1 only, bounded in time (about a minute), stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.chaos import Publisher, RedisServer, Subscriber, http_url, spread, start_nodes, wait_all, ws_url
from bench.fanout import get_token, own_cpu
from server.cli.serve import raise_open_files_limit

DURABLE, LIVE = "dur:stream", "live:stream"
SOCKET_TIMEOUT = 1.5  # the default of [broker] socket_timeout


async def main_async(args: argparse.Namespace) -> dict:
    raise_open_files_limit()
    directory = Path(tempfile.mkdtemp(prefix="stagewire-chaos-redis-"))
    redis = RedisServer(directory / "redis")
    await redis.start()
    env = {
        "STAGEWIRE_BROKER__SOCKET_TIMEOUT": str(SOCKET_TIMEOUT),
        "STAGEWIRE_NAMESPACES__DUR__PERSIST": "true", "STAGEWIRE_NAMESPACES__DUR__PUBLISH": "server",
        "STAGEWIRE_NAMESPACES__LIVE__PUBLISH": "server", "STAGEWIRE_NAMESPACES__LIVE__HISTORY_SIZE": "1000",
    }
    nodes = await start_nodes(directory, redis.url, 2, env)
    stop_clients, stop_publishing = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    cpu_started = own_cpu()
    try:
        tokens = [await get_token(nodes[0].port, f"chaos{i}") for i in range(10)]
        subscribers = [Subscriber([ws_url(nodes[i % 2])], tokens[i % 10], [DURABLE, LIVE])
                       for i in range(args.subscribers)]
        tasks += [asyncio.create_task(s.run(stop_clients)) for s in subscribers]
        if await wait_all(subscribers, lambda s: s.ready.is_set(), 120) is None:
            raise SystemExit("subscribers did not all subscribe")
        publishers = [Publisher([http_url(n) for n in nodes], channel, args.rate) for channel in (DURABLE, LIVE)]
        tasks += [asyncio.create_task(p.run(stop_publishing)) for p in publishers]
        await asyncio.sleep(args.before)

        killed = time.monotonic()
        await redis.kill()
        await asyncio.sleep(args.outage)
        await redis.start()
        restarted = time.monotonic()
        live_again = await wait_all(
            subscribers, lambda s: all(sub.last_live > restarted for sub in s.subs.values()), 60)
        await asyncio.sleep(args.after)
        stop_publishing.set()
        await asyncio.gather(*tasks[len(subscribers):])
        durable_acked, live_acked = (p.acknowledged for p in publishers)
        drained = await wait_all(subscribers, lambda s: durable_acked <= s.subs[DURABLE].got, 30)
        stop_clients.set()
        await asyncio.gather(*tasks[:len(subscribers)])
        nodes_cpu = [node.cpu_seconds() for node in nodes]
    finally:
        for task in tasks:
            task.cancel()
        for node in nodes:
            await node.stop()
        await redis.kill()

    during = [a for p in publishers for a in p.attempts if killed <= a.at < restarted]
    failures = [a for a in during if a.status != 200]
    lost_silently = 0
    for s in subscribers:
        sub = s.subs[LIVE]
        if not sub.not_recovered:
            lost_silently += len(live_acked - sub.got)
    report = {
        "subscribers": args.subscribers, "nodes": 2, "rate_per_channel": args.rate,
        "outage_s": args.outage, "socket_timeout_s": SOCKET_TIMEOUT,
        "durable_acknowledged": len(durable_acked),
        "durable_acknowledged_delayed": sum(1 for a in publishers[0].attempts if a.delayed),
        "durable_lost": sum(len(durable_acked - s.subs[DURABLE].got) for s in subscribers),
        "durable_drained_s": None if drained is None else round(drained, 2),
        "live_acknowledged": len(live_acked),
        "live_not_recovered": sum(1 for s in subscribers if s.subs[LIVE].not_recovered),
        "live_recovered": sum(1 for s in subscribers if s.subs[LIVE].recovered),
        "live_lost_silently": lost_silently,
        "skipped_offsets": {ch: sum(s.subs[ch].skipped for s in subscribers) for ch in (DURABLE, LIVE)},
        "durable_missing_examples": sorted({x for s in subscribers for x in durable_acked - s.subs[DURABLE].got})[:10],
        "outage_publishes": len(during),
        "outage_failures": {str(st): sum(1 for a in failures if a.status == st) for st in {a.status for a in failures}},
        "outage_failure_max_s": round(max((a.seconds for a in failures), default=0.0), 3),
        "outage_durable_delayed_max_s": round(max((a.seconds for a in during if a.delayed), default=0.0), 3),
        "live_again_s": None if live_again is None else round(live_again, 2),
        # From the restart: when subscribers were told (4005), subscribed again, had a live pub per channel.
        "after_restart_s": {
            "told": spread([t for s in subscribers for t, _ in s.closes if t > restarted]
                           + [t for s in subscribers for sub in s.subs.values() for t in sub.told if t > restarted],
                           restarted),
            "resubscribed": spread([t for s in subscribers for t in s.ready_at if t > restarted], restarted),
            **{f"live_{ch}": spread([s.subs[ch].first_live_after(restarted) for s in subscribers], restarted)
               for ch in (DURABLE, LIVE)},
        },
        "closes_by_code": _closes(subscribers),
        "unsubscribe_pushes": sum(len(sub.told) for s in subscribers for sub in s.subs.values()),
        "subscriber_errors": sum(len(s.errors) for s in subscribers),
        "cpu_s": {"load_generator": round(own_cpu() - cpu_started, 1), "nodes": [round(c, 1) for c in nodes_cpu]},
    }
    report["ok"] = (report["durable_lost"] == 0 and lost_silently == 0 and live_again is not None
                    and report["outage_failure_max_s"] <= SOCKET_TIMEOUT + 0.5)
    return report


def _closes(subscribers: list[Subscriber]) -> dict[str, int]:
    codes: dict[str, int] = {}
    for s in subscribers:
        for _, code in s.closes:
            codes[str(code)] = codes.get(str(code), 0) + 1
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="publications per second per channel")
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--outage", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=5.0)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "chaos-redis.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    raise SystemExit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
