"""Stopping background tasks for sure, in bounded time.

``task.cancel()`` followed by ``await task`` can wait forever: on Python 3.11
``asyncio.wait_for`` (which redis-py uses for every command) may swallow a
cancellation that races its result, and the task carries on. Shutdown must
end within ``shutdown_timeout`` whatever the peers do, so every owner of
background tasks stops them with :func:`stop_tasks`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("stagewire.tasks")

#: Seconds between repeated cancellations of a task that did not end.
RECANCEL_INTERVAL = 0.05


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0) -> bool:
    """Cancel ``tasks`` until they end, for at most ``timeout`` seconds; True if all ended.

    Exceptions of the tasks are consumed (logged at debug); a task still
    running after ``timeout`` is logged and left behind.
    """
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_INTERVAL, remaining))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("task %s ended with an error", task.get_name(), exc_info=task.exception())
    for task in pending:
        log.error("task %s did not stop within %.1f s", task.get_name(), timeout)
    return not pending
