"""``SessionReader``: session reads of concurrent connects, made as one database query.

When a node starts (or takes over the clients of another one), every connect
misses the session cache (``server.auth.session_cache``) at once. Read one by
one, each would pay a query, a join and the ORM's model objects. Instead, the
reads that wait while a query is in flight are sent together as the next one,
``WHERE id IN (...)`` with at most :data:`MAX_BATCH` ids, selecting plain
values: the batch grows with the load, and a lone connect still waits for a
single query only. This is group commit, for reads.

The query is plain SQL, made once per dialect and batch size and handed to
the driver: building it through the ORM's query builder, and its rows
through the model's fields, cost several times the query itself.

:func:`newest` reads the newest sessions that are not revoked, for a node
that starts to fill its cache with (``Authenticator.preload``).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from models.user import AuthSession, User

#: Ids per query; well under every database's limit of bound parameters.
MAX_BATCH = 500


def _quote(dialect: str) -> str:
    return "`" if dialect == "mysql" else '"'


def _select_sql(dialect: str) -> str:
    """``SELECT`` of a session's row and its user's columns, without a condition."""
    q = _quote(dialect)
    sessions, users = AuthSession._meta.db_table, User._meta.db_table
    return (
        f"SELECT s.{q}id{q}, s.{q}user_id{q}, u.{q}username{q}, u.{q}role{q}, s.{q}expires_at{q}, "
        f"s.{q}revoked_at{q} FROM {q}{sessions}{q} s JOIN {q}{users}{q} u ON u.{q}id{q} = s.{q}user_id{q}"
    )


@functools.cache
def _sql(dialect: str, count: int) -> str:
    """The query for ``count`` ids in ``dialect``'s quoting and placeholders."""
    if dialect == "postgres":
        marks = ",".join(f"${i}" for i in range(1, count + 1))
    else:
        marks = ",".join(("%s" if dialect == "mysql" else "?",) * count)
    q = _quote(dialect)
    return f"{_select_sql(dialect)} WHERE s.{q}id{q} IN ({marks})"


@dataclass(frozen=True, slots=True)
class SessionRow:
    """What the database holds of one session and its user."""

    user_id: int
    username: str
    role: str  # the role column; ``Authenticator.role_of`` adds [auth] admins
    expires_at: float  # unix time
    revoked: bool


class SessionReader:
    """Reads sessions by id, batching the reads that arrive while a query runs."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, list[asyncio.Future[SessionRow | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.queries = 0

    async def read(self, session_id: uuid.UUID) -> SessionRow | None:
        """The session ``session_id``, or None if there is none.

        Raises:
            Whatever the database raised for the query this read was part of.
        """
        future: asyncio.Future[SessionRow | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(session_id, []).append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="session-reader")
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                ids = list(self._waiting)[:MAX_BATCH]
                batch = {session_id: self._waiting.pop(session_id) for session_id in ids}
                try:
                    self.queries += 1
                    found = {_uuid(row[0]): _row(row) for row in await _select(ids)}
                except Exception as exc:
                    for futures in batch.values():
                        _settle(futures, exception=exc)
                    continue
                for session_id, futures in batch.items():
                    _settle(futures, found.get(session_id))
        finally:
            self._task = None
            for futures in self._waiting.values():  # only when cancelled: nobody reads any more
                _settle(futures, exception=asyncio.CancelledError())
            self._waiting.clear()


def _settle(futures: list[asyncio.Future[SessionRow | None]], result: SessionRow | None = None,
            exception: BaseException | None = None) -> None:
    for future in futures:
        if future.done():  # its connect was cancelled (the client went away)
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)


async def newest(limit: int) -> list[tuple[str, SessionRow]]:
    """Up to ``limit`` sessions not revoked, latest expiry first (expired ones included: the caller checks)."""
    connection = AuthSession._meta.db
    dialect = connection.capabilities.dialect
    q = _quote(dialect)
    sql = (f"{_select_sql(dialect)} WHERE s.{q}revoked_at{q} IS NULL "
           f"ORDER BY s.{q}expires_at{q} DESC LIMIT {int(limit)}")
    _, rows = await connection.execute_query(sql)
    return [(str(_uuid(row[0])), _row(row)) for row in map(_tuple, rows)]


async def _select(ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    connection = AuthSession._meta.db
    dialect = connection.capabilities.dialect
    # asyncpg binds a uuid column from UUID objects; SQLite and MySQL store the text.
    values: list[Any] = ids if dialect == "postgres" else [str(i) for i in ids]
    _, rows = await connection.execute_query(_sql(dialect, len(ids)), values)
    return [_tuple(row) for row in rows]


def _tuple(row: Any) -> tuple[Any, ...]:
    # Rows come as tuples, records or (MySQL) dicts, their columns in the order selected.
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _timestamp(value: Any) -> float:
    """Unix time of a stored datetime: ISO text (SQLite), or a datetime, naive meaning UTC (MySQL)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _row(row: tuple[Any, ...]) -> SessionRow:
    _, user_id, username, role, expires_at, revoked_at = row
    return SessionRow(int(user_id), str(username), str(role), _timestamp(expires_at), revoked_at is not None)
