"""Pytest plugin: run a test once per database backend (SQLite, PostgreSQL, MySQL).

``database_url`` is parametrized over the three backends. For PostgreSQL and
MySQL/MariaDB each test gets a freshly created database named
``sw_test_<hex>``, dropped afterwards. A server that cannot be reached skips
its tests, unless ``STAGEWIRE_REQUIRE_SERVICES=1`` (CI), which fails them.

The servers default to the local ones and can be moved with
``STAGEWIRE_TEST_POSTGRES_URL`` and ``STAGEWIRE_TEST_MYSQL_URL`` (a URL of an
existing database to connect to, with a user allowed to create databases).

``db`` initializes Tortoise on that database (applying the migrations) and
yields the ``Settings`` it used.

Creating a PostgreSQL database takes a few tenths of a second, so a test that
never reaches the database can pin the backend::

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import pytest

from models.db import close_db, init_db
from server.config import DatabaseSettings, Settings

POSTGRES_URL = os.environ.get(
    "STAGEWIRE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("STAGEWIRE_TEST_MYSQL_URL", "mysql://root:@127.0.0.1:3306/test")
CONNECT_TIMEOUT = 5.0


class _Server(Protocol):
    async def create(self, name: str) -> None: ...
    async def drop(self, name: str) -> None: ...


class _Postgres:
    def __init__(self, url: str) -> None:
        self.url = urlsplit(url)

    async def _execute(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=self.url.hostname, port=self.url.port or 5432, user=self.url.username,
            password=self.url.password, database=self.url.path.lstrip("/") or None,
            timeout=CONNECT_TIMEOUT,
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self, name: str) -> None:
        await self._execute(f'CREATE DATABASE "{name}"')

    async def drop(self, name: str) -> None:
        # FORCE: a test that failed half-way may have left connections open.
        await self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _MySQL:
    def __init__(self, url: str) -> None:
        self.url = urlsplit(url)

    async def _execute(self, sql: str) -> None:
        import asyncmy

        conn = await asyncio.wait_for(
            asyncmy.connect(
                host=self.url.hostname or "127.0.0.1", port=self.url.port or 3306,
                user=self.url.username or "root", password=self.url.password or "",
                connect_timeout=CONNECT_TIMEOUT,
            ),
            CONNECT_TIMEOUT,
        )
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql)
        finally:
            conn.close()

    async def create(self, name: str) -> None:
        await self._execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    async def drop(self, name: str) -> None:
        # Not IF EXISTS: on a missing database MySQL then emits a warning,
        # which asyncmy turns into a Python warning, an error in this suite.
        await self._execute(f"DROP DATABASE `{name}`")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


_SERVERS: dict[str, tuple[str, Callable[[str], _Server]]] = {
    "postgres": (POSTGRES_URL, _Postgres),
    "mysql": (MYSQL_URL, _MySQL),
}


def _unavailable(backend: str, url: str, exc: BaseException) -> None:
    host = urlsplit(url).netloc.rpartition("@")[2]
    reason = f"{backend} server at {host} unavailable: {type(exc).__name__}: {exc}"
    if os.environ.get("STAGEWIRE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (STAGEWIRE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database, once per backend."""
    backend: str = request.param
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'stagewire.sqlite3'}"
        return
    url, server_cls = _SERVERS[backend]
    server = server_cls(url)
    name = f"sw_test_{secrets.token_hex(6)}"
    try:
        await server.create(name)
    except (OSError, asyncio.TimeoutError) as exc:
        _unavailable(backend, url, exc)
    except Exception as exc:  # the driver's own error types: auth, protocol
        if type(exc).__module__.split(".")[0] not in ("asyncpg", "asyncmy"):
            raise
        _unavailable(backend, url, exc)
    try:
        yield _with_database(url, name)
    finally:
        await server.drop(name)


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """Tortoise initialized and migrated on ``database_url``; yields its settings."""
    settings = Settings(database=DatabaseSettings(url=database_url), base_dir=str(tmp_path))
    await init_db(settings)
    try:
        yield settings
    finally:
        await close_db()
