"""``SessionCache``: the sessions one node knows to be valid, so a connect reads no database.

A token's signature and age are checked by :mod:`server.auth.tokens`; whether
its session is still alive (not logged out, not expired) is the database's
answer, kept here for ``[auth] session_cache_ttl`` seconds, at most
``session_cache_size`` sessions, least recently used dropped first.

What makes an answer wrong is a revocation, and every revocation reaches
every node as a control message (:meth:`SessionCache.follow`):

* ``{"op": "disconnect", "session": S}`` (a logout; a password change, for
  each of the user's other sessions) forgets session ``S``;
* ``{"op": "disconnect", "user": U}`` (``POST /api/disconnect``) forgets every
  session of user ``U``;
* a node that may have missed control messages (its Redis pub/sub connection
  was lost and is back) forgets everything, and while the broker is not
  healthy the cache is not used at all.

So a revoked session is refused everywhere as soon as the control message
arrives. The TTL is the worst case, for a control message that was lost
without the node noticing (the logout's node could not reach Redis while this
one could); ``docs/scaling.md`` states it. A user's role, changed by
``stagewire user set-role`` from outside any node, also takes up to the TTL.

Answers read from the database while a revocation arrived may already be
stale, and are not kept (a generation counter, bumped by every revocation).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("stagewire.auth")


@dataclass(frozen=True, slots=True)
class CachedSession:
    """What the database said of a valid session, and until when we believe it."""

    user_id: int
    username: str
    role: str
    expires_at: float  # unix time the session itself expires (a refresh moves it)
    until: float  # monotonic time after which the database is asked again


class ControlChannel(Protocol):
    """What the cache follows: the node's control messages (``server.node.Node``)."""

    def on_control_message(self, op: str, listener: Callable[[dict[str, Any]], None]) -> None: ...

    def on_control_lost(self, listener: Callable[[], None]) -> None: ...

    @property
    def control_healthy(self) -> bool: ...


class SessionCache:
    """A bounded, expiring map of session id → :class:`CachedSession`.

    Args:
        size: At most this many sessions; 0 disables the cache.
        ttl: Seconds an answer is kept; 0 disables the cache.
        clock: Monotonic clock; tests fake it.
    """

    def __init__(self, size: int, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = max(0, size)
        self.ttl = max(0.0, ttl)
        self.hits = self.misses = 0
        # Bumped by every revocation: see the module docstring.
        self.generation = 0
        self._clock = clock
        self._entries: OrderedDict[str, CachedSession] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._usable: Callable[[], bool] = lambda: True

    def __len__(self) -> int:
        return len(self._entries)

    def follow(self, control: ControlChannel) -> None:
        """Forget what the cluster's control messages revoke; trust nothing while they cannot arrive."""
        control.on_control_message("disconnect", self.on_disconnect)
        control.on_control_lost(self.clear)
        self._usable = lambda: control.control_healthy

    def get(self, session_id: str) -> CachedSession | None:
        """The cached answer for ``session_id``, if it is fresh and the cache may be used."""
        entry = self._entries.get(session_id)
        if entry is None or entry.until <= self._clock() or not self._usable():
            self.misses += 1
            return None
        self._entries.move_to_end(session_id)
        self.hits += 1
        return entry

    def put(self, session_id: str, user_id: int, username: str, role: str, expires_at: float,
            generation: int) -> None:
        """Keep a database answer read when :attr:`generation` was ``generation``."""
        if generation != self.generation or not self.size or not self.ttl:
            return
        self._drop(session_id)
        self._entries[session_id] = CachedSession(user_id, username, role, expires_at, self._clock() + self.ttl)
        self._by_user.setdefault(username, set()).add(session_id)
        while len(self._entries) > self.size:
            self._drop(next(iter(self._entries)))

    def revoke_session(self, session_id: str) -> None:
        self.generation += 1
        self._drop(session_id)

    def revoke_user(self, username: str) -> None:
        self.generation += 1
        for session_id in list(self._by_user.get(username, ())):
            self._drop(session_id)

    def clear(self) -> None:
        """Forget everything (control messages may have been missed)."""
        self.generation += 1
        if self._entries:
            log.info("session cache dropped (%d sessions): control messages may have been missed",
                     len(self._entries))
        self._entries.clear()
        self._by_user.clear()

    def on_disconnect(self, message: dict[str, Any]) -> None:
        """A ``disconnect`` control message, from any node."""
        session, user = message.get("session"), message.get("user")
        if isinstance(session, str):
            self.revoke_session(session)
        elif isinstance(user, str):
            self.revoke_user(user)

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is None:
            return
        sessions = self._by_user.get(entry.username)
        if sessions is not None:
            sessions.discard(session_id)
            if not sessions:
                del self._by_user[entry.username]
