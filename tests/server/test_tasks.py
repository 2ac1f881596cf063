"""stop_tasks: a task that swallows a cancellation is cancelled again, and the wait is bounded."""

from __future__ import annotations

import asyncio

from server.tasks import stop_tasks


async def test_a_task_that_swallows_one_cancellation_still_stops():
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # as asyncio.wait_for can do on Python 3.11
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop_tasks([task], timeout=2.0) is True
    assert task.cancelled() and swallowed == 2


async def test_a_task_that_never_stops_is_left_after_the_timeout():
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await stop_tasks([task], timeout=0.2) is False
    assert loop.time() - started < 1.0
    release.set()
    task.cancel()
    await asyncio.wait([task], timeout=1)


async def test_errors_of_stopped_tasks_are_consumed():
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    assert await stop_tasks([task], timeout=1.0) is True
