"""Fan-out to Pusher subscribers next to the same fan-out to native ones, interleaved.

One server process per run (memory broker), N subscribers on one channel:
native ``/ws`` clients in one run, Pusher ``/app/{key}`` clients on the same
Stagewire channel in the next, alternating for ``--rounds``. A native
publisher pipelines publish commands for ``--seconds`` each time (see
``bench.fanout.max_throughput``). Each line is one run; the last line gives
the Pusher / native ratios of the medians, which is what to compare on a
shared machine (absolute numbers drift).

Usage::

    flock /tmp/stagewire-bench.lock python -m bench.pusher_fanout --subscribers 1000 --rounds 3 --seconds 3

``--hub`` measures the server's side alone, in this process: the hub's
fan-out and each writer's flush (framing included) into transports that
discard the bytes, for native and Pusher writers alternately. End to end, the
load generator parses one frame per Pusher event (against one frame per tick
for native clients), which weighs on its side of the measure.

Everything is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

from bench.fanout import HOST, ServerProcess, connect_client, connect_many, free_port, get_token, max_throughput, subscribe_all
from bench.wsraw import RawWS
from server.cli.serve import raise_open_files_limit

KEY = "bench-pusher-key"
APPS = f'[{{id = "1", key = "{KEY}", secret = "bench-secret", namespace = "bench"}}]'


async def pusher_subscribers(port: int, n: int, concurrency: int = 200) -> list[RawWS]:
    """``n`` Pusher connections subscribed to "fanout" (the Stagewire channel bench:fanout)."""
    loop = asyncio.get_running_loop()
    clients: list[RawWS] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            _, ws = await loop.create_connection(
                lambda: RawWS(f"/app/{KEY}?protocol=7&client=bench&version=1", f"{HOST}:{port}"), HOST, port)
            await ws.opened
            ws.send_text(b'{"event":"pusher:subscribe","data":{"channel":"fanout"}}')
            deadline = time.monotonic() + 10
            while ws.messages < 2:  # connection_established, subscription_succeeded
                if time.monotonic() > deadline:
                    raise RuntimeError("no subscription_succeeded")
                await asyncio.sleep(0.01)
            clients.append(ws)

    await asyncio.gather(*(one() for _ in range(n)))
    return clients


async def run(kind: str, n: int, seconds: float, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(tmp, free_port(), {"STAGEWIRE_PUSHER__APPS": APPS,
                                                  "STAGEWIRE_NAMESPACES__BENCH__JOIN_LEAVE": "false"})
        await server.start()
        try:
            token = await get_token(server.port, "bench")
            if kind == "native":
                subs, _ = await connect_many(server.port, token, n)
                await subscribe_all(subs)
            else:
                subs = await pusher_subscribers(server.port, n)
            publisher = await connect_client(server.port, token)
            result = {"kind": kind, "subscribers": n, **await max_throughput(server, publisher, subs, seconds, batch)}
            for c in (*subs, publisher):
                if c.transport:
                    c.transport.close()
            return result
        finally:
            await server.stop()


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class _Subscriber:
    def __init__(self, encoding: Any, writer: Any) -> None:
        self.encoding, self.writer, self.subscriptions = encoding, writer, set()

    def send(self, message: Any) -> None:
        pass


async def hub_run(kind: str, n: int, ticks: int = 300, per_tick: int = 10) -> dict:
    """Deliveries per second through the hub and the writers alone."""
    from server.hub import Hub
    from server.protocol import Encoding, pub_push
    from server.pusher.connection import frames_for
    from server.writer import FlushScheduler, Writer

    flusher = FlushScheduler(asyncio.get_running_loop())
    hub: Hub[Any] = Hub()
    for i in range(n):
        framing = frames_for(f"{i}.{i}") if kind == "pusher" else None
        writer = Writer(_NullTransport(), flusher, binary=False, limit=1 << 30,  # type: ignore[arg-type]
                        on_overflow=lambda: None, framing=framing)
        sub = _Subscriber(Encoding.PUSHER if kind == "pusher" else Encoding.JSON, writer)
        hub.add(sub, "bench:fanout")
        hub.activate(sub, "bench:fanout", 0)
    started = time.perf_counter()
    for tick in range(ticks):
        for j in range(per_tick):
            hub.broadcast("bench:fanout", pub_push("bench:fanout", tick * per_tick + j, "x" * 32, None))
        await asyncio.sleep(0)  # the flush of this tick
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    return {"kind": kind, "subscribers": n, "hub_deliveries_per_s": round(n * ticks * per_tick / elapsed)}


async def main_async(args: argparse.Namespace) -> None:
    raise_open_files_limit()
    if args.hub:
        hub_results: dict[str, list[int]] = {"native": [], "pusher": []}
        for _ in range(args.rounds):
            for kind in ("native", "pusher"):
                result = await hub_run(kind, args.subscribers)
                hub_results[kind].append(result["hub_deliveries_per_s"])
                print(json.dumps(result), flush=True)
        ratio = statistics.median(hub_results["pusher"]) / statistics.median(hub_results["native"])
        print(json.dumps({"pusher_to_native_hub_deliveries_per_s": round(ratio, 2)}), flush=True)
        return
    results: dict[str, list[dict]] = {"native": [], "pusher": []}
    for _ in range(args.rounds):
        for kind in ("native", "pusher"):
            result = await run(kind, args.subscribers, args.seconds, args.batch)
            results[kind].append(result)
            print(json.dumps(result), flush=True)

    def median(kind: str, field: str) -> float:
        return statistics.median(r[field] for r in results[kind])

    print(json.dumps({
        "pusher_to_native_deliveries_per_s": round(median("pusher", "deliveries_per_s") / median("native", "deliveries_per_s"), 2),
        "pusher_to_native_server_cpu": round(median("pusher", "server_cpu") / max(median("native", "server_cpu"), 0.01), 2),
        "lost": sum(r["lost"] for rs in results.values() for r in rs),
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--hub", action="store_true", help="the server's fan-out alone, in this process")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
