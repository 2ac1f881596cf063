"""A transaction whose end failed leaves its task able to use the database again.

The fault is the one a database cut off in the middle of a commit produces:
the connection dies while it is being returned to the pool, so the pool's
``release`` raises. Which moment a real outage hits is a race (the outage tests
in tests/reliability/ hit it now and then); here it is made to happen every
time, on a real PostgreSQL.
"""

from __future__ import annotations

import asyncpg
import asyncpg.pool
import pytest
from tortoise.transactions import in_transaction

from models.transactions import transaction
from models.user import User


@pytest.fixture
def release_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real_release = asyncpg.pool.Pool.release
    failed = False

    async def release(self: asyncpg.pool.Pool, connection: object, *, timeout: float | None = None) -> None:
        nonlocal failed
        await real_release(self, connection, timeout=timeout)
        if not failed:
            failed = True
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    monkeypatch.setattr(asyncpg.pool.Pool, "release", release)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_commit_whose_connection_failed_to_go_back_is_committed(db, release_fails_once) -> None:
    async with transaction():
        await User.create(username="alice", password_hash="-")
    # Committed, and the same task (the durable writer, a WebSocket's loop) goes on using the database.
    assert await User.filter(username="alice").count() == 1
    async with transaction():
        await User.create(username="bob", password_hash="-")
    assert await User.all().count() == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_failed_body_rolls_back_and_raises(db) -> None:
    with pytest.raises(RuntimeError):
        async with transaction():
            await User.create(username="alice", password_hash="-")
            raise RuntimeError("the handler failed")
    assert await User.all().count() == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_tortoise_alone_leaves_the_task_on_a_released_connection(db, release_fails_once) -> None:
    """What :func:`models.transactions.transaction` puts right."""
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        async with in_transaction():
            await User.all().count()
    with pytest.raises(asyncpg.exceptions.InterfaceError, match="released back to the pool"):
        await User.all().count()
