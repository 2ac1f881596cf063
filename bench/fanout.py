"""Fan-out benchmark: one publisher, N subscribers on one channel, one server process.

Runs each server of ``--servers`` on a free 127.0.0.1 port, one after the
other and ``--rounds`` times, interleaved (bare, stagewire, bare, stagewire,
...) so that both see the same machine:

* ``stagewire``: ``python -m server`` on embedded defaults (memory broker,
  SQLite in a temporary directory), with a real token check;
* ``bare``: the reference prototype, ``python -m bench.bare_server`` (no auth).

For each N and each run it reports:

* connects+auths per second (N clients doing the upgrade and ``connect``),
* server RSS per idle authenticated, subscribed connection, read
  ``IDLE_SETTLE`` seconds after the last subscribe,
* max deliveries/s (the publisher keeps ``--inflight`` publications in flight
  for a fixed time),
* p50/p99 latency at 20 publications/s,
* the CPU time of the server and of this load generator.

With both servers, a last line per N gives the ratios stagewire / bare (the
medians of the rounds).

Usage::

    python -m bench.fanout --subscribers 1000 5000 --seconds 5 --rounds 3

Everything is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.wsraw import RawWS, open_ws
from server.cli.serve import raise_open_files_limit

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
API_KEY = "bench-key"
CHANNEL = "bench:fanout"
#: Seconds between the last subscribe and the RSS reading.
IDLE_SETTLE = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """The server under test, with its CPU and memory readings from /proc."""

    def __init__(self, tmp: str, port: int, extra_env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.tmp, self.port = tmp, port
        self.command = command or [sys.executable, "-m", "server"]
        self.env = {
            **os.environ,
            "STAGEWIRE_SERVER__HOST": HOST,
            "STAGEWIRE_SERVER__PORT": str(port),
            "STAGEWIRE_DATABASE__URL": f"sqlite://{tmp}/bench.sqlite3",
            "STAGEWIRE_AUTH__SECRET_FILE": f"{tmp}/secret",
            "STAGEWIRE_API__KEYS": API_KEY,
            "STAGEWIRE_CLIENT__COMMAND_RATE": "1000000",
            "STAGEWIRE_CLIENT__COMMAND_BURST": "1000000",
            "STAGEWIRE_CLIENT__WRITE_BUFFER_LIMIT": str(8 * 1024 * 1024),
            "STAGEWIRE_NAMESPACES__BENCH__PUBLISH": "client",
            "STAGEWIRE_NAMESPACES__BENCH__HISTORY_SIZE": "10",
            **(extra_env or {}),
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"http://{HOST}:{self.port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except asyncio.TimeoutError:
                self.proc.kill()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def get_token(port: int, username: str) -> str:
    body = {"username": username, "password": "bench-password"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{HOST}:{port}/api/auth/register", json=body) as r:
            assert r.status in (201, 409), await r.text()
        async with http.post(f"http://{HOST}:{port}/api/auth/login", json=body) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["token"]


async def connect_client(port: int, token: str, **kwargs) -> RawWS:
    ws = await open_ws(HOST, port, **kwargs)
    reply = await ws.call({"id": 1, "type": "connect", "token": token})
    if "result" not in reply:
        raise RuntimeError(f"connect failed: {reply}")
    return ws


async def connect_many(port: int, token: str, n: int, concurrency: int = 200) -> tuple[list[RawWS], float]:
    clients: list[RawWS] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            clients.append(await connect_client(port, token))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return clients, time.perf_counter() - started


async def subscribe_all(clients: list[RawWS]) -> None:
    await asyncio.gather(*(c.call({"id": 2, "type": "subscribe", "channel": CHANNEL}) for c in clients))


async def max_throughput(server: ServerProcess, publisher: RawWS, subs: list[RawWS], seconds: float,
                         batch: int = 50, inflight: int = 100) -> dict:
    """Publish for ``seconds`` with ``inflight`` publications awaiting their reply, then wait for every delivery.

    Publish commands go ``batch`` to a frame; the publisher waits for the reply
    to its oldest frame whenever ``inflight`` publications are unanswered.
    """
    base = sum(c.messages for c in subs)
    payload = b'"' + b"x" * 32 + b'"'
    next_id = 1000
    published = 0
    frames_in_flight = max(1, inflight // batch)
    cpu_server, cpu_self = server.cpu_seconds(), own_cpu()
    started = time.perf_counter()
    waiting: list[asyncio.Future] = []
    while time.perf_counter() - started < seconds:
        frame = []
        for _ in range(batch):
            next_id += 1
            frame.append(b'{"id":%d,"type":"publish","channel":"%s","data":%s}' % (next_id, CHANNEL.encode(), payload))
        fut = asyncio.get_running_loop().create_future()
        publisher._waiters[next_id] = fut
        publisher.send_text(b"\n".join(frame))
        published += batch
        waiting.append(fut)
        if len(waiting) >= frames_in_flight:
            await waiting.pop(0)
    for fut in waiting:
        await fut
    expected = published * len(subs)
    deadline = time.perf_counter() + 60
    while sum(c.messages for c in subs) - base < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    delivered = sum(c.messages for c in subs) - base
    return {
        "publications": published,
        "deliveries": delivered,
        "lost": expected - delivered,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(delivered / elapsed),
        "server_cpu": round((server.cpu_seconds() - cpu_server) / elapsed, 2),
        "loadgen_cpu": round((own_cpu() - cpu_self) / elapsed, 2),
    }


async def latency(publisher: RawWS, subs: list[RawWS], rate: float, seconds: float) -> dict:
    samples: list[float] = []
    for c in subs:
        c.on_latency = samples.append
    n = int(rate * seconds)
    next_id = 10_000_000
    start = time.perf_counter()
    for i in range(n):
        next_id += 1
        publisher.send_text(b'{"id":%d,"type":"publish","channel":"%s","data":{"t":%.6f}}' % (next_id, CHANNEL.encode(), time.time()))
        delay = start + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    deadline = time.perf_counter() + 10
    while len(samples) < n * len(subs) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    for c in subs:
        c.on_latency = None
    samples.sort()
    return {
        "samples": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 2),
    }


def bare_command(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.bare_server", "--host", HOST, "--port", str(port)]


async def run_one(n: int, seconds: float, batch: int = 50, kind: str = "stagewire", inflight: int = 100) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        command = bare_command(port) if kind == "bare" else None
        server = ServerProcess(tmp, port, command=command)
        await server.start()
        try:
            # The bare server takes any token.
            token = await get_token(server.port, "bench") if kind == "stagewire" else "bare"
            await asyncio.sleep(0.3)
            rss_before = server.rss_bytes()
            subs, connect_time = await connect_many(server.port, token, n)
            await subscribe_all(subs)
            # Idle, as the figure says: a server's housekeeping after the storm of connects and
            # subscribes (Stagewire's heap trim, one quiet second after it) is part of that.
            await asyncio.sleep(IDLE_SETTLE)
            rss_after = server.rss_bytes()
            publisher = await connect_client(server.port, token)
            result = {
                "server": kind,
                "subscribers": n,
                "connects_per_s": round(n / connect_time),
                "rss_per_conn_kib": round((rss_after - rss_before) / n / 1024, 2),
                "publish_batch": batch,
                "inflight": inflight,
                "throughput": await max_throughput(server, publisher, subs, seconds, batch, inflight),
                "latency_20hz": await latency(publisher, subs, 20.0, min(seconds, 5.0)),
                "closed_early": sum(1 for c in subs if c.closed.done()),
            }
            for c in (*subs, publisher):
                if c.transport:
                    c.transport.close()
            return result
        finally:
            await server.stop()


def ratios(runs: list[dict]) -> dict:
    """stagewire / bare for each figure, the median over the rounds."""
    def median(kind: str, get) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(get(r) for r in runs if r["server"] == kind)

    figures = {
        "connects_per_s": lambda r: r["connects_per_s"],
        "rss_per_conn": lambda r: r["rss_per_conn_kib"],
        "deliveries_per_s": lambda r: r["throughput"]["deliveries_per_s"],
        "p99_20hz": lambda r: r["latency_20hz"]["p99_ms"],
        "p50_20hz": lambda r: r["latency_20hz"]["p50_ms"],
    }
    out: dict = {"ratios": "stagewire/bare", "subscribers": runs[0]["subscribers"],
                 "rounds": sum(1 for r in runs if r["server"] == "bare")}
    for name, get in figures.items():
        bare = median("bare", get)
        out[name] = round(median("stagewire", get) / bare, 3) if bare else None
    return out


async def main_async(args: argparse.Namespace) -> None:
    raise_open_files_limit()  # the load generator holds N sockets too
    results = []
    for n in args.subscribers:
        runs = []
        for _ in range(args.rounds):
            for kind in args.servers:
                result = await run_one(n, args.seconds, args.batch, kind, args.inflight)
                runs.append(result)
                print(json.dumps(result), flush=True)
        results += runs
        if {"bare", "stagewire"} <= set(args.servers):
            summary = ratios(runs)
            results.append(summary)
            print(json.dumps(summary), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the max-throughput phase")
    parser.add_argument("--batch", type=int, default=1,
                        help="publish commands per frame from the publisher (1: one per frame)")
    parser.add_argument("--inflight", type=int, default=16,
                        help="publications awaiting their reply while publishing as fast as possible")
    parser.add_argument("--servers", nargs="+", choices=("bare", "stagewire"), default=["stagewire"],
                        help="the servers to run, interleaved in this order (bare is bench/bare_server.py)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each server per N")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
