"""Webhooks under load: what a ``publish`` webhook costs the publishers, and how fast the outbox drains.

Runs the real parts in one process: a :class:`~server.node.Node` with the
memory broker, the hooks (``HookEvents`` → the group-committed outbox →
``WebhookSender``) on a real database, and a real aiohttp receiver that
verifies every signature. Each round publishes ``--publications`` times from
``--publishers`` concurrent publishers, once with no webhook ("off") and once
with a webhook that takes every ``publish`` event ("on"), alternating, so the
ratio of the two is measured under the same machine load.

Usage::

    python -m bench.hooks --database sqlite --publications 20000 --rounds 3
    python -m bench.hooks --database postgres://postgres@127.0.0.1:5432/test --publications 20000 --rounds 3

Reports per round the publications/s (off and on) and, for "on", the events/s
delivered (from the first publish until the receiver has every event) and
how many POSTs and outbox transactions that took. The receiver shares the
process, so the delivery figure is a lower bound. Bounded in count; stops by
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from bench.durable import _create_postgres
from models.db import close_db, init_db
from server.broker.memory import MemoryBroker
from server.config import DatabaseSettings, Settings
from server.hooks import signing
from server.hooks.service import Hooks
from server.node import Node
from server.presence.memory import MemoryPresence

SECRET = "bench-secret"


class Receiver:
    def __init__(self) -> None:
        self.events = 0
        self.posts = 0
        self.bad = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not signing.verify(SECRET, body, request.headers.get(signing.HEADER)):
            self.bad += 1
            return web.Response(status=401)
        self.posts += 1
        self.events += body.count(b'"name":"publish"')
        if self.events >= self.expected:
            self.done.set()
        return web.Response(status=204)


async def one_round(url: str, port: int, receiver: Receiver, hooked: bool, publications: int,
                    publishers: int, batch: int) -> dict[str, Any]:
    webhooks = [{"url": f"http://127.0.0.1:{port}/hooks", "events": ["publish"], "secret": SECRET,
                 "name": "bench"}] if hooked else []
    settings = Settings(database=DatabaseSettings(url=url)).replace(
        namespaces={"bench": {"publish": "client"}}, webhooks=webhooks,
        hooks={"batch_max": batch, "poll_interval": 0.2, "retry_min_delay": 0.05})
    node = Node(settings, MemoryBroker(), MemoryPresence(30.0))
    await node.start()
    hooks = Hooks(settings, node, None)
    await hooks.start()
    node.events = hooks.events
    receiver.events, receiver.posts, receiver.expected = 0, 0, publications
    receiver.done.clear()
    per = publications // publishers

    async def publisher(i: int) -> None:
        for n in range(per):
            await node.publish(f"bench:c{i % 10}", {"n": n, "text": "x" * 32})

    try:
        started = time.perf_counter()
        await asyncio.gather(*(publisher(i) for i in range(publishers)))
        published = time.perf_counter() - started
        result: dict[str, Any] = {"webhook": "on" if hooked else "off",
                                  "publications_per_s": round(per * publishers / published)}
        if hooked:
            await asyncio.wait_for(receiver.done.wait(), 300)
            delivered = time.perf_counter() - started
            result.update(events_per_s=round(receiver.events / delivered), posts=receiver.posts,
                          outbox_transactions=hooks.outbox.commits, bad_signatures=receiver.bad)
        return result
    finally:
        await hooks.close()
        await node.close()


async def run(database: str, publications: int, publishers: int, rounds: int, batch: int) -> dict[str, Any]:
    name = f"sw_bench_{secrets.token_hex(4)}"
    tmp = tempfile.TemporaryDirectory()
    if database.startswith("postgres"):
        await _create_postgres(database, name)
        url = urlunsplit(urlsplit(database)._replace(path=f"/{name}"))
    elif database.startswith("sqlite"):
        url = f"sqlite://{tmp.name}/bench.sqlite3"
    else:
        raise SystemExit("use a postgres:// URL, or sqlite")
    await init_db(Settings(database=DatabaseSettings(url=url)))
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    results = []
    try:
        for _ in range(rounds):
            for hooked in (False, True):
                results.append(await one_round(url, port, receiver, hooked, publications, publishers, batch))
    finally:
        await runner.cleanup()
        await close_db()
        if database.startswith("postgres"):
            await _create_postgres(database, name, drop=True)
        tmp.cleanup()
    off = [r["publications_per_s"] for r in results if r["webhook"] == "off"]
    on = [r["publications_per_s"] for r in results if r["webhook"] == "on"]
    return {
        "database": url.split("://", 1)[0], "publications": publications, "publishers": publishers,
        "batch_max": batch, "rounds": results,
        "publish_ratio_on_over_off": round(statistics.median(a / b for a, b in zip(on, off)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite")
    parser.add_argument("--publications", type=int, default=20000)
    parser.add_argument("--publishers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="[hooks] batch_max")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args.database, args.publications, args.publishers, args.rounds, args.batch)),
                     indent=1))


if __name__ == "__main__":
    main()
