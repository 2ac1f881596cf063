"""Restart benchmark: how long a node takes to get all its clients back after SIGTERM.

1. Starts ``python -m server`` with the Redis broker (a ``redis-server`` of
   its own, or ``--redis`` with a key prefix of its own, deleted at the end), opens ``--sessions`` login sessions and
   connects ``--clients`` WebSocket clients (``bench/wsraw.py``, ``--inflight``
   handshakes at a time), each subscribed to one of ``--channels`` channels.
2. Publishes one message per channel, which every client will have to recover.
3. SIGTERMs the server and starts it again on the same port at once. Every
   client behaves as the JS and Python clients do: it waits the
   ``reconnect_after`` range of the ``disconnect`` push (SIGTERM sends
   ``[server] shutdown_reconnect_after``, overridden with ``--hint``), then
   retries with full-jitter backoff (0.5 s doubling to 5 s) until it is
   connected and subscribed with ``recover: true`` from its last position.
4. Reports the seconds from SIGTERM until the old process exited (and the CPU
   it used for that), until every client is back and recovered
   (``recovered: true``, with the missed publication), the seconds from the new
   process being ready, the restarted server's peak RSS (``VmHWM``) and CPU, and
   this generator's CPU.

Usage::

    flock /tmp/stagewire-bench.lock python -m bench.restart --clients 10000

Everything is bounded (``--timeout`` for the whole storm) and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from bench.chaos import RedisServer
from bench.connect import HOST, Proc, free_port, login_sessions, own_cpu, stagewire
from bench.wsraw import RawWS

API_KEY = "bench-restart-key"
BACKOFF_BASE, BACKOFF_CAP = 0.5, 5.0


class Client(RawWS):
    """A raw client that keeps the ``disconnect`` push (for its ``reconnect_after``)."""

    disconnect: dict[str, Any] | None = None

    def data_received(self, data: bytes) -> None:
        if self.opened.cancelled():  # the upgrade took too long and was given up
            if self.transport is not None:
                self.transport.close()
            return
        super().data_received(data)

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1 and b'"disconnect"' in payload:
            for line in payload.split(b"\n"):
                if b'"type":"disconnect"' in line:
                    self.disconnect = orjson.loads(line)
        super()._frame(opcode, payload)


async def open_client(port: int) -> Client:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: Client("/ws", f"{HOST}:{port}"), HOST, port)
    await proto.opened
    return proto


class Subscriber:
    """One client: its token, its channel and the last position it knows."""

    def __init__(self, token: str, channel: str) -> None:
        self.token, self.channel = token, channel
        self.ws: Client | None = None
        self.position: tuple[int, str] | None = None
        self.recovered: bool | None = None
        self.attempts = 0

    async def connect(self, port: int) -> None:
        # Bounded: an upgrade accepted into the backlog of a process that is exiting gets no answer.
        ws = await asyncio.wait_for(open_client(port), 10)
        try:
            reply = await asyncio.wait_for(ws.call({"id": 1, "type": "connect", "token": self.token}), 30)
            if "result" not in reply:
                raise ConnectionError(f"connect refused: {reply}")
            command: dict[str, Any] = {"id": 2, "type": "subscribe", "channel": self.channel}
            if self.position is not None:
                command.update(recover=True, offset=self.position[0], epoch=self.position[1])
            reply = await asyncio.wait_for(ws.call(command), 30)
            if "result" not in reply:
                raise ConnectionError(f"subscribe refused: {reply}")
        except BaseException:
            if ws.transport is not None:
                ws.transport.close()
            raise
        result = reply["result"]
        if self.position is None:
            self.position = (result["offset"], result["epoch"])
        else:
            self.recovered = bool(result.get("recovered")) and len(result.get("publications", ())) >= 1
        self.ws = ws

    async def come_back(self, port: int, sem: asyncio.Semaphore) -> float:
        """After the server closed us: wait as told, then retry with full jitter; when we were back."""
        assert self.ws is not None
        await self.ws.closed
        hint = (self.ws.disconnect or {}).get("reconnect_after")
        delay = random.uniform(hint[0], hint[1]) / 1000 if hint else random.uniform(0, BACKOFF_BASE)
        attempt = 0
        while True:
            await asyncio.sleep(delay)
            self.attempts += 1
            try:
                async with sem:
                    await self.connect(port)
                return time.perf_counter()
            except (OSError, ConnectionError, asyncio.TimeoutError):
                attempt += 1
                delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))


async def publish(http: aiohttp.ClientSession, port: int, channel: str, data: Any) -> None:
    async with http.post(f"http://{HOST}:{port}/api/publish", json={"channel": channel, "data": data},
                         headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        assert r.status == 200, await r.text()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench-restart-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        private = None
        if args.redis is None:
            private = RedisServer(Path(tmp, "redis"))
            await private.start()
        redis_url = private.url if private is not None else args.redis
        extra = {
            "STAGEWIRE_BROKER__BACKEND": "redis",
            "STAGEWIRE_BROKER__REDIS_URL": redis_url,
            "STAGEWIRE_BROKER__PREFIX": prefix,
            "STAGEWIRE_API__KEYS": API_KEY,
            "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": "10",
            "STAGEWIRE_NAMESPACES__BENCH__HISTORY_TTL": "600",
        }
        if args.hint is not None:
            extra["STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER"] = args.hint
        server: Proc = stagewire(tmp, free_port(), **extra)
        try:
            await server.start()
            return await storm(server, args)
        finally:
            await server.stop()
            if private is not None:
                await private.kill()
            else:
                redis = Redis.from_url(redis_url)
                keys = [key async for key in redis.scan_iter(match=f"{prefix}.*", count=1000)]
                if keys:
                    await redis.delete(*keys)
                await redis.aclose()


async def cpu_until_exit(server: Proc, before: float) -> float:
    """Wait for the process to exit; its CPU seconds since ``before`` (read every 10 ms: a lower bound)."""
    assert server.proc is not None
    used = 0.0
    while server.proc.returncode is None:
        try:
            used = server.cpu_seconds() - before
        except (OSError, ValueError, IndexError):  # exited between the check and the read
            break
        try:
            await asyncio.wait_for(asyncio.shield(server.proc.wait()), 0.01)
        except asyncio.TimeoutError:
            pass
    await server.proc.wait()
    return used


async def storm(server: Proc, args: argparse.Namespace) -> dict[str, Any]:
    tokens = await login_sessions(server.port, args.sessions)
    subs = [Subscriber(tokens[i % len(tokens)], f"bench:restart-{i % args.channels}") for i in range(args.clients)]
    sem = asyncio.Semaphore(args.inflight)

    async def first(sub: Subscriber) -> None:
        async with sem:
            await sub.connect(server.port)

    started = time.perf_counter()
    await asyncio.gather(*(first(s) for s in subs))
    initial = time.perf_counter() - started
    print(f"{len(subs)} clients connected and subscribed in {initial:.1f} s", file=sys.stderr)
    async with aiohttp.ClientSession() as http:
        for c in range(args.channels):
            await publish(http, server.port, f"bench:restart-{c}", {"before": "restart"})
    print(f"published to {args.channels} channels", file=sys.stderr)
    await asyncio.sleep(1.0)
    rss_before = server.status_kib("VmRSS")

    cpu_self = own_cpu()
    # Reconnecting clients do not queue behind each other as the first connects did:
    # only this generator's own bound on open handshakes holds them.
    storm_sem = asyncio.Semaphore(args.storm_inflight)
    back = [asyncio.create_task(s.come_back(server.port, storm_sem)) for s in subs]
    cpu_before_stop = server.cpu_seconds()
    sigterm = time.perf_counter()
    server.terminate()
    assert server.proc is not None
    stop_cpu = await cpu_until_exit(server, cpu_before_stop)
    stopped = time.perf_counter() - sigterm
    print(f"SIGTERM: exited after {stopped:.1f} s ({stop_cpu:.2f} s of CPU)", file=sys.stderr)
    ready = await server.start() + stopped
    print(f"restarted: ready {ready:.1f} s after SIGTERM", file=sys.stderr)
    done, pending = await asyncio.wait(back, timeout=args.timeout)
    for task in pending:
        task.cancel()
    finished = [t.result() - sigterm for t in done if t.exception() is None]
    cpu_server = server.cpu_seconds()  # the new process's CPU, from its start
    result = {
        "clients": args.clients,
        "sessions": args.sessions,
        "channels": args.channels,
        "inflight": args.inflight,
        "storm_inflight": args.storm_inflight,
        "hint_ms": args.hint or "server default",
        "initial_connect_s": round(initial, 1),
        "stopped_after_s": round(stopped, 2),
        "stop_cpu_s": round(stop_cpu, 2),
        "ready_after_s": round(ready, 2),
        "all_back_after_s": round(max(finished), 2) if len(finished) == len(subs) else None,
        "back": len(finished),
        "p50_back_after_s": round(sorted(finished)[len(finished) // 2], 2) if finished else None,
        "recovered": sum(1 for s in subs if s.recovered),
        "attempts_per_client": round(sum(s.attempts for s in subs) / len(subs), 2),
        "rss_before_restart_mib": round(rss_before / 1024, 1),
        "peak_rss_after_restart_mib": round(server.status_kib("VmHWM") / 1024, 1),
        "server_cpu_s": round(cpu_server, 1),
        "generator_cpu_s": round(own_cpu() - cpu_self, 1),
    }
    for s in subs:
        if s.ws is not None and s.ws.transport is not None:
            s.ws.transport.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=1000, help="login sessions the clients share")
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=100, help="handshakes in flight at most")
    parser.add_argument("--storm-inflight", type=int, default=1000,
                        help="reconnect handshakes in flight at most (this generator's bound)")
    parser.add_argument("--hint", help="reconnect_after sent at SIGTERM, 'min_ms,max_ms' (default: the server's)")
    parser.add_argument("--redis", help="a Redis URL to use (default: a redis-server of the bench's own)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the clients have to come back")
    parser.add_argument("--output", help="write the result as JSON here")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.install()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
