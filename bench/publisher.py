"""A publisher in a process of its own: ``WINDOW`` publishes in flight on one connection.

The scale-out benchmark (:mod:`bench.redis_scale`) reads thousands of
subscriber sockets in its own event loop; a publisher in that loop would wait
for its replies behind those reads, and the figure would be the generator's
latency, not the servers' capacity. Run here, it has a core's share of its own.

Protocol on stdin/stdout, one line each::

    → (started)           ← {"ready": true}
    → run <seconds>       ← {"published": n, "tops": [offsets...], "cpu_s": s}
    (stdin closed)        → exits

Usage (by the benchmark)::

    BENCH_TOKEN=T python -m bench.publisher --port P --channel C [--window 16]

The token comes in the environment, not the command line, where ``ps`` shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time

import orjson

from bench.fanout import connect_client, own_cpu
from bench.wsraw import RawWS

WINDOW = 16


async def publish_window(publisher: RawWS, channel: str, seconds: float, window: int,
                         ids: itertools.count, tops: list[int]) -> int:
    """Keep ``window`` publishes in flight for ``seconds``; returns how many were acknowledged."""
    loop = asyncio.get_running_loop()
    stop = time.perf_counter() + seconds
    done = 0
    prefix = b'{"id":%d,"type":"publish","channel":"' + channel.encode() + b'","data":%d}'

    async def lane() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            i = next(ids)
            future = loop.create_future()
            publisher._waiters[i] = future
            publisher.send_text(prefix % (i, i))
            reply = await future
            if "result" in reply:
                done += 1
                tops.append(reply["result"]["offset"])

    await asyncio.gather(*(lane() for _ in range(window)))
    return done


async def serve(port: int, token: str, channel: str, window: int) -> None:
    publisher = await connect_client(port, token)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    ids = itertools.count(10)
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    while line := await reader.readline():
        command, _, argument = line.decode().partition(" ")
        if command != "run":
            raise SystemExit(f"unknown command {command!r}")
        tops: list[int] = []
        cpu = own_cpu()
        published = await publish_window(publisher, channel, float(argument), window, ids, tops)
        print(orjson.dumps({"published": published, "tops": tops, "cpu_s": own_cpu() - cpu}).decode(), flush=True)
    if publisher.transport is not None:
        publisher.transport.close()


#: Bytes of one answer line at most: ``tops`` holds an offset per acknowledged publication.
LINE_LIMIT = 64 * 2**20


class PublisherProcess:
    """``python -m bench.publisher`` as a child process, driven line by line."""

    def __init__(self, port: int, token: str, channel: str, window: int = WINDOW) -> None:
        self.args = ["--port", str(port), "--channel", channel, "--window", str(window)]
        self.env = {**os.environ, "BENCH_TOKEN": token}
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> PublisherProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.publisher", *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self.env,
            limit=LINE_LIMIT)
        await self._line()
        return self

    async def run(self, seconds: float) -> dict:
        """Publish for ``seconds``: ``{"published", "tops", "cpu_s"}``."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"run {seconds}\n".encode())
        await self.proc.stdin.drain()
        return await self._line()

    async def _line(self) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        if not line:
            raise RuntimeError(f"bench.publisher exited with {await self.proc.wait()}")
        return orjson.loads(line)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            await stop_child(self.proc)


async def stop_child(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    """End a child driven on its stdin: close it, and kill the child if it has not exited within ``timeout``."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(serve(args.port, os.environ["BENCH_TOKEN"], args.channel, args.window))


if __name__ == "__main__":
    main()
