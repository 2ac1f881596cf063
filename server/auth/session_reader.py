"""``SessionReader``: session reads of concurrent connects, made as one database query.

When a node starts (or takes over the clients of another one), every connect
misses the session cache (``server.auth.session_cache``) at once. Read one by
one, each would pay a query, a join and the ORM's model objects. Instead, the
reads that wait while a query is in flight are sent together as the next one,
``WHERE id IN (...)`` with at most :data:`MAX_BATCH` ids, selecting plain
values: the batch grows with the load, and a lone connect still waits for a
single query only. This is group commit, for reads.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.user import AuthSession

#: Ids per query; well under every database's limit of bound parameters.
MAX_BATCH = 500

_FIELDS = ("id", "user_id", "user__username", "user__role", "expires_at", "revoked_at")


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
                    rows = await AuthSession.filter(id__in=ids).values_list(*_FIELDS)
                except Exception as exc:
                    for futures in batch.values():
                        _settle(futures, exception=exc)
                    continue
                found = {_uuid(row[0]): _row(row) for row in rows}
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


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _row(row: tuple[Any, ...]) -> SessionRow:
    _, user_id, username, role, expires_at, revoked_at = row
    expires: datetime = expires_at
    return SessionRow(int(user_id), str(username), str(role), expires.timestamp(), revoked_at is not None)
