"""One database transaction that cannot outlive itself in its task.

Tortoise keeps the connection of an open transaction in a context variable of
the running task, and puts the previous value back when the transaction ends.
When the database goes away mid-transaction, ending it fails twice (the
rollback, then returning the connection to the pool) and Tortoise skips putting
the previous value back. Every later query of that task then goes to a
connection that is back in the pool ("connection has been released back to the
pool") and fails, until the task ends. The durable writer, the webhook outbox
and a WebSocket's read loop are tasks that do not end: they would never store
anything again, even once the database is back.

:func:`transaction` is ``in_transaction`` with that put right, and with the
outcome of the commit told apart from the clean-up after it:

* the body or the commit failed before the database answered ``COMMIT``: the
  exception propagates, and for the commit itself it is :class:`CommitInDoubt`,
  since the database may have committed without the answer reaching us;
* the commit succeeded and returning the connection failed: the transaction is
  committed, so nothing is raised (the pool drops the broken connection).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connections
from tortoise.transactions import in_transaction

from models.db import CONNECTION

log = logging.getLogger(__name__)


class CommitInDoubt(Exception):
    """``COMMIT`` was sent and no answer came back: the transaction may or may not be stored."""


@asynccontextmanager
async def transaction(name: str = CONNECTION) -> AsyncIterator[BaseDBAsyncClient]:
    """``async with transaction() as connection:`` commits on success, rolls back on error."""
    handler = get_connections()
    before = handler.get(name)
    committing = committed = False
    try:
        async with in_transaction(name) as connection:
            yield connection
            committing = True
            await connection.commit()  # Tortoise's exit then only releases the connection
            committed = True
    except Exception as exc:
        if committed:
            log.warning("committed, but the connection could not go back to the pool", exc_info=True)
        elif committing:  # whatever the rollback that followed raised
            raise CommitInDoubt(str(exc) or type(exc).__name__) from exc
        else:
            raise
    finally:
        if handler.get(name) is not before:  # Tortoise failed to restore the task's connection
            handler.set(name, before)
