"""Slow clients: 1000 subscribers that never read while a publisher floods their channel.

One ``python -m server`` (memory broker, ``write_buffer_limit`` at its default
of 1 MiB). ``--normal`` subscribers of ``bench:normal`` measure latency at
``--rate`` publications a second, twice for ``--seconds`` each, while a second
publisher floods ``bench:flood`` with ``--flood-rate`` publications of
``--size`` bytes a second:

* **without** slow clients (nobody subscribes to ``bench:flood``);
* **with** ``--slow`` clients subscribed to ``bench:flood`` that stop reading
  after their ``subscribe`` reply, on sockets with a 4 KiB receive buffer.

It reports both p99s and their ratio (target ≤ 1.2), the server's RSS before
the slow clients, with them idle, at its peak during the flood and after, per
slow client against ``write_buffer_limit``, and how many were cut off.

Usage::

    python -m bench.slow_clients --slow 1000          # make chaos

127.0.0.1 only, bounded in time, stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench.fanout import HOST, ServerProcess, connect_client, free_port, get_token, own_cpu
from bench.soak import metrics
from bench.wsraw import RawWS
from server.cli.serve import raise_open_files_limit

WRITE_BUFFER_LIMIT = 1_048_576  # the default of [client] write_buffer_limit


async def slow_client(port: int, token: str) -> RawWS:
    """Connected and subscribed to ``bench:flood``, then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    _, ws = await asyncio.get_running_loop().create_connection(lambda: RawWS("/ws", f"{HOST}:{port}"), sock=sock)
    await ws.opened
    await ws.call({"id": 1, "type": "connect", "token": token})
    await ws.call({"id": 2, "type": "subscribe", "channel": "bench:flood"})
    assert ws.transport is not None
    ws.transport.pause_reading()
    return ws


async def flood(publisher: RawWS, rate: float, size: int, stop: asyncio.Event) -> int:
    pad = "x" * size
    n, started = 0, time.perf_counter()
    while not stop.is_set():
        n += 1
        publisher.send_text(b'{"id":%d,"type":"publish","channel":"bench:flood","data":"%s"}' % (n, pad.encode()))
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
    return n


async def measure(server: ServerProcess, publisher: RawWS, flooder: RawWS, subs: list[RawWS],
                  args: argparse.Namespace) -> dict:
    """p50/p99 of ``subs`` at ``args.rate`` while the flood runs, without this process's collector.

    The generator holds a thousand clients too: a full collection here takes
    tens of milliseconds, which every sample taken meanwhile would count as
    the server's latency. So its objects are frozen and its collector is off
    while it measures, in both phases alike.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await _measure(server, publisher, flooder, subs, args)
    finally:
        gc.enable()


async def _measure(server: ServerProcess, publisher: RawWS, flooder: RawWS, subs: list[RawWS],
                   args: argparse.Namespace) -> dict:
    samples: list[float] = []
    for sub in subs:
        sub.on_latency = samples.append
    stop = asyncio.Event()
    stalls = LoopStalls(asyncio.get_running_loop())
    flooding = asyncio.create_task(flood(flooder, args.flood_rate, args.size, stop))
    count = int(args.rate * args.seconds)
    started = time.perf_counter()
    for i in range(count):
        publisher.send_text(b'{"id":%d,"type":"publish","channel":"bench:normal","data":{"t":%.6f}}'
                            % (10_000_000 + i, time.time()))
        await asyncio.sleep(max(0.0, started + (i + 1) / args.rate - time.perf_counter()))
    stop.set()
    published = await flooding
    deadline = time.perf_counter() + 10
    while len(samples) < count * len(subs) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    for sub in subs:
        sub.on_latency = None
    stalls.stop()
    samples.sort()
    return {"samples": len(samples), "expected": count * len(subs), "flood_publications": published,
            "p50_ms": round(statistics.median(samples) * 1000, 2),
            "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 2),
            "max_ms": round(samples[-1] * 1000, 2),
            "load_generator_stalls": stalls.report()}


class LoopStalls:
    """This process's own event-loop stalls over 2 ms: latency that is the load generator's, not the server's.

    A timer every millisecond; how late it fires is how long the loop was
    busy or off the CPU (the kernel's loopback work for a thousand sockets
    runs on the same two cores).
    """

    PERIOD = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last = time.perf_counter()
        self._stalls: list[float] = []
        self._handle = loop.call_later(self.PERIOD, self._beat)

    def _beat(self) -> None:
        now = time.perf_counter()
        late = now - self._last - self.PERIOD
        if late > 0.002:
            self._stalls.append(late)
        self._last = now
        self._handle = self._loop.call_later(self.PERIOD, self._beat)

    def stop(self) -> None:
        self._handle.cancel()

    def report(self) -> dict:
        return {"over_2ms": len(self._stalls), "worst_ms": round(max(self._stalls, default=0.0) * 1000, 2)}


async def sample_rss(server: ServerProcess, peak: list[int], stop: asyncio.Event) -> None:
    """The server's highest RSS so far in ``peak[0]``, read every 50 ms."""
    while not stop.is_set():
        peak[0] = max(peak[0], server.rss_bytes())
        await asyncio.sleep(0.05)


async def main_async(args: argparse.Namespace) -> dict:
    raise_open_files_limit()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = ServerProcess(tmp, port, {"STAGEWIRE_CLIENT__WRITE_BUFFER_LIMIT": str(WRITE_BUFFER_LIMIT)})
        await server.start()
        try:
            token = await get_token(port, "bench")
            subs = [await connect_client(port, token) for _ in range(args.normal)]
            for i, sub in enumerate(subs):
                await sub.call({"id": 2, "type": "subscribe", "channel": "bench:normal"})
            publisher, flooder = await connect_client(port, token), await connect_client(port, token)
            flooder.track_replies = False
            cpu = [server.cpu_seconds()]
            without = await measure(server, publisher, flooder, subs, args)
            cpu.append(server.cpu_seconds())
            rss_before = server.rss_bytes()
            slow = []
            for i in range(0, args.slow, 100):
                slow += await asyncio.gather(*(slow_client(port, token) for _ in range(min(100, args.slow - i))))
            await asyncio.sleep(1)
            rss_idle = server.rss_bytes()
            peak, sampled = [rss_idle], asyncio.Event()
            sampler = asyncio.create_task(sample_rss(server, peak, sampled))
            flood_started = time.monotonic()
            cpu.append(server.cpu_seconds())
            with_slow = await measure(server, publisher, flooder, subs, args)
            cpu.append(server.cpu_seconds())
            # The server may still be working through the flood: wait until every slow client is cut off.
            all_cut = None
            while time.monotonic() - flood_started < args.seconds + 60:
                figures = await metrics(port)
                if figures.get("stagewire_slow_disconnects_total", 0) >= args.slow:
                    all_cut = time.monotonic() - flood_started
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            sampled.set()
            await sampler
            rss_after = server.rss_bytes()
            figures = await metrics(port)
            for client in slow:
                if client.transport is not None:
                    client.transport.abort()
        finally:
            await server.stop()
    per_slow = (peak[0] - rss_before) / max(1, args.slow)
    return {
        "normal_subscribers": args.normal, "slow_clients": args.slow, "rate": args.rate,
        "flood": {"rate": args.flood_rate, "size": args.size},
        "without_slow": without, "with_slow": with_slow,
        "p99_ratio": round(with_slow["p99_ms"] / without["p99_ms"], 2),
        "rss_mib": {"before_slow": round(rss_before / 2**20, 1), "slow_idle": round(rss_idle / 2**20, 1),
                    "peak": round(peak[0] / 2**20, 1), "after": round(rss_after / 2**20, 1)},
        "peak_kib_per_slow_client": round(per_slow / 1024, 1),
        "idle_kib_per_slow_client": round((rss_idle - rss_before) / max(1, args.slow) / 1024, 1),
        "write_buffer_limit_kib": WRITE_BUFFER_LIMIT // 1024,
        "slow_disconnects": int(figures.get("stagewire_slow_disconnects_total", 0)),
        "all_cut_off_s": None if all_cut is None else round(all_cut, 2),
        # Server CPU seconds during each measured phase (each lasts --seconds).
        "server_cpu_s": {"without_slow": round(cpu[1] - cpu[0], 1), "with_slow": round(cpu[3] - cpu[2], 1)},
        "load_generator_cpu_s": round(own_cpu(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--normal", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flood-rate", type=float, default=50.0)
    parser.add_argument("--size", type=int, default=16000)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "slow-clients.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    # The documented bound of a slow client: write_buffer_limit on top of what an idle connection costs.
    bound_kib = WRITE_BUFFER_LIMIT / 1024 + report["idle_kib_per_slow_client"]
    raise SystemExit(0 if report["p99_ratio"] <= 1.2 and report["peak_kib_per_slow_client"] <= bound_kib else 1)


if __name__ == "__main__":
    main()
