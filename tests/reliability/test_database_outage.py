"""The database stopped during group commit, then started: no acknowledgement for what was not stored."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.conftest import NAMESPACES, make_settings
from tests.private_postgres import PrivatePostgres, private_postgres  # noqa: F401


async def until(condition, timeout: float, what: str, task: asyncio.Task) -> None:
    """Wait for ``condition()``; fail after ``timeout`` or if the publisher failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if task.done():
            task.result()  # the publisher's own failure, if any
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


async def stored_offsets(pg: PrivatePostgres, channel: str) -> list[int]:
    conn = await asyncpg.connect(pg.url.replace("postgres://", "postgresql://"), timeout=5)
    try:
        rows = await conn.fetch("SELECT seq FROM publications WHERE channel = $1 ORDER BY seq", channel)
    finally:
        await conn.close()
    return [row["seq"] for row in rows]


async def test_publishes_fail_clearly_while_the_database_is_down_and_resume_after(
    make_stagewire, tmp_path, private_postgres
):
    settings = make_settings(
        tmp_path,
        database={"url": private_postgres.url},
        namespaces={**NAMESPACES, "log": {"subscribe": "authenticated", "publish": "client", "persist": True}},
    )
    sw = await make_stagewire(settings)
    publisher = await sw.client("alice")
    subscriber = await sw.client("bob")
    await subscriber.result("subscribe", channel="log:db")
    acked: list[int] = []
    refused: list[dict] = []
    stop = asyncio.Event()

    async def publish_steadily() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            reply = await publisher.call("publish", channel="log:db", data=i, timeout=20)
            if "result" in reply:
                acked.append(reply["result"]["offset"])
            else:
                refused.append(reply["error"])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(publish_steadily())
    await until(lambda: len(acked) >= 20, 30, "publishing", task)
    await private_postgres.stop()
    await until(lambda: bool(refused), 30, "a publish refused while the database is down", task)
    acked_before_restart = len(acked)
    await private_postgres.start()
    await until(lambda: len(acked) >= acked_before_restart + 20, 30, "publishing resumed", task)
    stop.set()
    await asyncio.wait_for(task, 30)

    assert all(e["code"] == 112 and e["temporary"] is True for e in refused), refused
    assert len(acked) >= acked_before_restart + 20, "the batch resumes after the database is back"
    stored = await stored_offsets(private_postgres, "log:db")
    assert set(acked) <= set(stored), "every acknowledged publication is stored"
    assert acked == sorted(acked) and len(set(acked)) == len(acked)
    # The subscriber got every acknowledged publication, in order, each once.
    received: list[int] = []
    while len(received) < len(stored):
        received.append((await subscriber.recv_push("pub", channel="log:db", timeout=10))["offset"])
    assert received == stored

