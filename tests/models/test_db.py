"""Database setup: URLs, start-up migrations on each backend, models in step with migrations."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget

from models import migrations
from models.db import APP_LABEL, CONNECTION, TORTOISE_ORM, close_db, database_url, init_db, tortoise_config
from models.publication import PublicationRecord
from models.user import User
from server.config import Settings


def settings_with(url: str, base_dir: str = "/srv/stagewire") -> Settings:
    return Settings(base_dir=base_dir).replace(database={"url": url})


@pytest.mark.parametrize("url,expected", [
    ("sqlite://data/db.sqlite3", "sqlite:///srv/stagewire/data/db.sqlite3"),
    ("sqlite:///var/db.sqlite3", "sqlite:///var/db.sqlite3"),
    ("sqlite://data/db.sqlite3?journal_mode=DELETE",
     "sqlite:///srv/stagewire/data/db.sqlite3?journal_mode=DELETE"),
    ("sqlite://:memory:", "sqlite://:memory:"),
    ("postgres://u:p@db:5432/app", "postgres://u:p@db:5432/app"),
    ("mysql://u:p@db:3306/app", "mysql://u:p@db:3306/app"),
])
def test_database_url_resolves_relative_sqlite_paths(url: str, expected: str) -> None:
    assert database_url(settings_with(url)) == expected


async def test_init_db_creates_the_sqlite_directory(tmp_path: Path) -> None:
    settings = settings_with("sqlite://data/nested/stagewire.sqlite3", str(tmp_path))
    ctx = await init_db(settings)
    try:
        assert await User.all().count() == 0
    finally:
        await close_db(ctx)
    assert (tmp_path / "data" / "nested" / "stagewire.sqlite3").is_file()


def migration_files() -> list[tuple[str, str]]:
    return sorted((APP_LABEL, m.name) for m in pkgutil.iter_modules(migrations.__path__))


async def test_migrations_apply_once(database_url: str, tmp_path: Path) -> None:
    settings = settings_with(database_url, str(tmp_path))
    assert (APP_LABEL, "0001_initial") in migration_files()
    for _ in range(2):  # the second start finds nothing to do
        ctx = await init_db(settings)
        try:
            await User.create(username=f"user{await User.all().count()}", password_hash="x")
            _, rows = await Tortoise.get_connection("default").execute_query(
                "SELECT app, name FROM tortoise_migrations"
            )
        finally:
            await close_db(ctx)
        assert sorted((row["app"], row["name"]) for row in rows) == migration_files()
    ctx = await init_db(settings, migrate=False)
    try:
        assert await User.all().count() == 2
    finally:
        await close_db(ctx)


async def test_models_and_migrations_agree() -> None:
    # Fails when a model changed without a migration: run
    # `.venv/bin/tortoise -c models.db.TORTOISE_ORM makemigrations`.
    ctx = await Tortoise.init(config=TORTOISE_ORM)
    try:
        assert ctx.apps is not None
        writers = await MigrationAutodetector(ctx.apps, TORTOISE_ORM["apps"]).changes()
        assert [w.name for w in writers] == []
    finally:
        await close_db(ctx)


async def test_the_unique_key_migration_keeps_the_first_row_of_a_key_stored_twice(database_url: str, tmp_path: Path) -> None:
    """Rows stored before the constraint may share a key: the first keeps it, the migration goes through."""
    settings = settings_with(database_url, str(tmp_path))
    config = tortoise_config(settings)
    ctx = await init_db(settings, migrate=False)
    try:
        await MigrationExecutor(ctx.db(CONNECTION), config["apps"]).migrate(
            [MigrationTarget(APP_LABEL, "0005_webhooks")])
        rows = [("log:a", 1, "k"), ("log:a", 2, "k"), ("log:b", 1, "k"), ("log:a", 3, None), ("log:a", 4, None)]
        for channel, seq, key in rows:
            await ctx.db(CONNECTION).execute_query(
                "INSERT INTO publications (channel, epoch, seq, data, idempotency_key, created_at)"
                f" VALUES ('{channel}', 'e', {seq}, '1', {'NULL' if key is None else repr(key)}, '2026-01-01 00:00:00')")
    finally:
        await close_db(ctx)
    ctx = await init_db(settings)
    try:
        kept = await PublicationRecord.all().order_by("channel", "seq").values_list("channel", "seq", "idempotency_key")
        assert kept == [("log:a", 1, "k"), ("log:a", 2, None), ("log:a", 3, None), ("log:a", 4, None), ("log:b", 1, "k")]
        with pytest.raises(IntegrityError):
            await PublicationRecord.create(channel="log:a", epoch="e", seq=5, data="1", idempotency_key="k")
    finally:
        await close_db(ctx)
