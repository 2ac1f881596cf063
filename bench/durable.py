"""Durable publishes per second: group commit against one insert per publication.

Runs the real store-then-deliver path (``server.durable.DurableLog`` with the
memory broker) against a real database, with many concurrent publishers, as a
busy server would see them. ``--max-batch 1`` turns group commit off: every
publication is its own transaction.

Usage::

    python -m bench.durable --database postgres://postgres@127.0.0.1:5432/test --publications 50000
    python -m bench.durable --database postgres://postgres@127.0.0.1:5432/test --publications 5000 --max-batch 1

A fresh database ``sw_bench_<hex>`` is created next to the given one and dropped
afterwards (SQLite: a temporary file). Bounded in count; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

from models.db import close_db, init_db
from server.broker.base import HistoryOptions
from server.broker.memory import MemoryBroker
from server.config import DatabaseSettings, Settings
from server.durable import DurableLog


class _Sink:
    """A broker handler that only counts deliveries."""

    delivered = 0

    def on_publication(self, pub) -> None:
        self.delivered += 1

    def on_presence(self, *args) -> None: ...

    def on_control(self, *args) -> None: ...

    def on_gap(self, *args) -> None: ...

    def on_control_gap(self) -> None: ...


async def _create_postgres(url: str, name: str, drop: bool = False) -> None:
    import asyncpg

    parts = urlsplit(url)
    conn = await asyncpg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username,
                                 password=parts.password, database=parts.path.lstrip("/") or None)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' if drop else f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def run(database: str, publications: int, publishers: int, max_batch: int, channels: int) -> dict:
    name = f"sw_bench_{secrets.token_hex(4)}"
    tmp = tempfile.TemporaryDirectory()
    if database.startswith("postgres"):
        await _create_postgres(database, name)
        url = urlunsplit(urlsplit(database)._replace(path=f"/{name}"))
    elif database.startswith("sqlite"):
        url = f"sqlite://{tmp.name}/bench.sqlite3"
    else:
        raise SystemExit("use a postgres:// URL, or sqlite")
    settings = Settings(database=DatabaseSettings(url=url))
    await init_db(settings)
    broker = MemoryBroker()
    sink = _Sink()
    await broker.start(sink)
    log = DurableLog(broker, max_batch=max_batch)
    await log.start()
    history = HistoryOptions(size=100, ttl=300)
    per_publisher = publications // publishers
    try:
        for c in range(channels):
            await broker.subscribe(f"bench:d{c}")

        async def publisher(i: int) -> None:
            channel = f"bench:d{i % channels}"
            for n in range(per_publisher):
                await log.publish(channel, {"n": n, "text": "x" * 32}, {"user": "bench"}, history)

        started = time.perf_counter()
        await asyncio.gather(*(publisher(i) for i in range(publishers)))
        elapsed = time.perf_counter() - started
        total = per_publisher * publishers
        return {
            "database": url.split("://", 1)[0],
            "max_batch": max_batch,
            "publishers": publishers,
            "channels": channels,
            "publications": total,
            "delivered": sink.delivered,
            "transactions": log.commits,
            "seconds": round(elapsed, 2),
            "publications_per_s": round(total / elapsed),
        }
    finally:
        await log.close()
        await broker.close()
        await close_db()
        if database.startswith("postgres"):
            await _create_postgres(database, name, drop=True)
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--publications", type=int, default=50000)
    parser.add_argument("--publishers", type=int, default=500, help="concurrent publishers")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=1000, help="1 = one insert per publication")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.database, args.publications, args.publishers, args.max_batch, args.channels))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
