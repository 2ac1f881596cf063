"""Counting subscribers in a C process of their own (``bench/subscribers.c``), for the scale-out bench.

On two cores, the Python generator (:mod:`bench.wsraw`) takes most of a core
to read a million deliveries a second: two server nodes could not both have
a core, and the figure would say more about the generator than about them.
The C swarm parses the frames and counts messages, as ``RawWS`` counts them
(newlines + 1 per text frame), and the publications among them, for a
fraction of that.

It is built on first use with the system's C compiler into ``bench/.build/``
(ignored by git) and rebuilt when its source changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson

from bench.fanout import process_cpu_seconds
from bench.publisher import stop_child

SOURCE = Path(__file__).with_name("subscribers.c")
BUILD = Path(__file__).with_name(".build")


def build() -> Path:
    """The compiled swarm (built now if its source changed); SystemExit without a C compiler."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("bench/subscribers.c needs a C compiler (cc or gcc); or run with --generator python")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = BUILD / f"subscribers-{digest}"
    if not binary.exists():
        BUILD.mkdir(exist_ok=True)
        partial = binary.with_suffix(".tmp")
        subprocess.run([compiler, "-O2", "-Wall", "-o", str(partial), str(SOURCE)], check=True)
        partial.rename(binary)
    return binary


class SubscriberSwarm:
    """``counts[i]`` subscribers of ``channel`` on each of ``ports``, in one C process.

    ``messages`` (every message: replies and the server's pings too), ``pubs``
    (publications) and ``frames`` are totals over every connection, read with :meth:`count`.
    """

    def __init__(self, host: str, ports: list[int], counts: list[int], token: str, channel: str) -> None:
        self.args = [host, channel, *(f"{p}:{n}" for p, n in zip(ports, counts))]
        self.token = token
        self.proc: asyncio.subprocess.Process | None = None
        self.total = sum(counts)

    async def __aenter__(self) -> SubscriberSwarm:
        binary = build()
        self.proc = await asyncio.create_subprocess_exec(
            str(binary), *self.args, env={**os.environ, "BENCH_TOKEN": self.token},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        ready = await asyncio.wait_for(self._line(), 120)
        if ready.get("ready") != self.total:
            raise RuntimeError(f"subscribers not all connected and subscribed: {ready}")
        return self

    async def count(self) -> dict[str, int]:
        """``{"messages", "pubs", "frames", "closed"}`` so far."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"count\n")
        return await asyncio.wait_for(self._line(), 10)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    async def _line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the subscriber swarm exited ({await self.proc.wait()})")
        result: dict[str, Any] = orjson.loads(line)
        return result

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None:
            await stop_child(self.proc)
