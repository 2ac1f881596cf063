"""Database setup: the Tortoise config and start-up migrations.

The database is named by one URL, ``settings.database.url``: ``sqlite://PATH``
(a relative path is resolved against the config file's directory),
``postgres://user:pass@host:5432/db`` or ``mysql://user:pass@host:3306/db``.

Migrations are Tortoise's built-in ones, kept in :mod:`models.migrations` and
applied at start-up by :func:`init_db`. After changing a model, write the next
migration with::

    .venv/bin/tortoise -c models.db.TORTOISE_ORM makemigrations

Tortoise keeps its state in a context variable, so the app factory's
database context (``server.app``) comes before any cleanup context that
starts tasks using the database: a task only sees the database if it was
created after :func:`init_db` ran.

Migrations are not guarded by a lock: with several worker processes, migrate
once before they start, and start the workers with ``migrate=False``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base import executor as tortoise_executor
from tortoise.context import TortoiseContext
from tortoise.migrations.executor import MigrationExecutor

from server.config import DatabaseSettings, Settings

logger = logging.getLogger(__name__)

APP_LABEL = "stagewire"
CONNECTION = "default"
MIGRATIONS_MODULE = "models.migrations"

#: Modules holding the app's models: add a module here when you add one.
MODEL_MODULES: tuple[str, ...] = (
    "models.user", "models.publication", "models.apikey", "models.rooms", "models.webhook",
)


def database_url(settings: Settings) -> str:
    """``settings.database.url``, with a relative SQLite path resolved by ``settings.path``."""
    path = _sqlite_path(settings)
    if path is None:
        return settings.database.url
    query = settings.database.url.partition("?")[2]
    return f"sqlite://{path}" + (f"?{query}" if query else "")


def _sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file of ``settings``, or None for another backend or ``:memory:``."""
    url = settings.database.url
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://").partition("?")[0]
    if not path or path == ":memory:":
        return None
    return settings.path(path)


def tortoise_config(settings: Settings) -> dict[str, Any]:
    """The ``Tortoise.init`` config for ``settings``: one app, one connection."""
    return {
        "connections": {CONNECTION: database_url(settings)},
        "apps": {
            APP_LABEL: {
                "models": list(MODEL_MODULES),
                "migrations": MIGRATIONS_MODULE,
                "default_connection": CONNECTION,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


#: For the ``tortoise`` CLI (``-c models.db.TORTOISE_ORM``). makemigrations only
#: compares the models with the migration files, so an in-memory database does.
TORTOISE_ORM = tortoise_config(Settings(database=DatabaseSettings(url="sqlite://:memory:")))


async def init_db(settings: Settings, *, migrate: bool = True) -> TortoiseContext:
    """Connect to the database and apply any pending migrations.

    Args:
        settings: Where ``database.url`` (and ``base_dir``, for SQLite) come from.
        migrate: Apply pending migrations. Turn off for a read-only tool that
            must not change the schema.

    Returns:
        Tortoise's context, also made current for this task and the tasks it
        starts from now on. Pass it to :func:`close_db` when closing from
        another task.
    """
    config = tortoise_config(settings)
    if (path := _sqlite_path(settings)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # Tortoise caches each model's INSERT/DELETE SQL for the whole process,
    # keyed by connection name but not by dialect: after an init on another
    # backend (tests, tools) it would send, say, SQLite's "?" to PostgreSQL.
    tortoise_executor.EXECUTOR_CACHE.clear()
    ctx = await Tortoise.init(config=config)
    if not migrate:
        return ctx
    try:
        await _apply_migrations(ctx, config)
    except BaseException:
        # An open aiosqlite connection has a non-daemon thread that would keep
        # the process alive after the error.
        await close_db(ctx)
        raise
    return ctx


async def _apply_migrations(ctx: TortoiseContext, config: dict[str, Any]) -> None:
    # The executor, not tortoise.migrations.api.migrate: that one calls
    # Tortoise.init again (with lazy connections) and would replace ours.
    executor = MigrationExecutor(ctx.db(CONNECTION), config["apps"])
    steps = await executor.plan()
    if not steps:
        return
    for step in steps:
        logger.info("applying migration %s.%s", step.migration.app_label, step.migration.name)
    await executor.migrate()


async def close_db(ctx: TortoiseContext | None = None) -> None:
    """Close the connections of ``ctx``, by default those of the current context."""
    if ctx is None:
        await Tortoise.close_connections()
    else:
        await ctx.close_connections()
