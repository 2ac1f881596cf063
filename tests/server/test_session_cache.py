"""The node's cache of valid sessions: bounds, expiry, revocations, and the Authenticator using it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable

import pytest

from models.user import AuthSession
from server.auth import session_reader
from server.auth.session_cache import SessionCache
from server.auth.sessions import Authenticator
from server.config import Settings
from server.errors import CommandError, ErrorCode
from tests.server.test_auth import CHEAP_HASHING, SECRET, FakeClock, clock  # noqa: F401  (fixture)


class Control:
    """A stand-in for the node's control channel: what the cache follows."""

    def __init__(self) -> None:
        self.listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self.lost: list[Callable[[], None]] = []
        self.control_healthy = True

    def on_control_message(self, op: str, listener: Callable[[dict[str, Any]], None]) -> None:
        self.listeners.setdefault(op, []).append(listener)

    def on_control_lost(self, listener: Callable[[], None]) -> None:
        self.lost.append(listener)

    def send(self, message: dict[str, Any]) -> None:
        for listener in self.listeners.get(message["op"], []):
            listener(message)


def put(cache: SessionCache, session_id: str, username: str = "alice", user_id: int = 1) -> None:
    cache.put(session_id, user_id, username, "user", time.time() + 600, cache.generation)


def test_answers_expire_after_the_ttl() -> None:
    now = FakeClock(100.0)
    cache = SessionCache(10, 5.0, clock=now)
    put(cache, "s1")
    assert cache.get("s1") is not None
    now.advance(4.9)
    assert cache.get("s1") is not None
    now.advance(0.2)
    assert cache.get("s1") is None
    assert (cache.hits, cache.misses) == (2, 1)


def test_size_is_bounded_least_recently_used_first() -> None:
    cache = SessionCache(3, 60.0)
    for sid in ("s1", "s2", "s3"):
        put(cache, sid)
    assert cache.get("s1") is not None  # s2 is now the least recently used
    put(cache, "s4")
    assert len(cache) == 3
    assert cache.get("s2") is None
    assert all(cache.get(sid) is not None for sid in ("s1", "s3", "s4"))


@pytest.mark.parametrize("size, ttl", [(0, 60.0), (10, 0.0)])
def test_zero_size_or_ttl_keeps_nothing(size: int, ttl: float) -> None:
    cache = SessionCache(size, ttl)
    put(cache, "s1")
    assert len(cache) == 0 and cache.get("s1") is None


def test_an_answer_read_while_a_revocation_arrived_is_not_kept() -> None:
    cache = SessionCache(10, 60.0)
    generation = cache.generation  # the database read starts
    cache.revoke_session("s1")  # a logout arrives meanwhile
    cache.put("s1", 1, "alice", "user", time.time() + 600, generation)
    assert cache.get("s1") is None


def test_control_messages_revoke_a_session_or_every_session_of_a_user() -> None:
    control = Control()
    cache = SessionCache(10, 60.0)
    cache.follow(control)
    put(cache, "a1", "alice")
    put(cache, "a2", "alice")
    put(cache, "b1", "bob", 2)
    control.send({"op": "disconnect", "session": "a1", "reason": "logged out"})
    assert cache.get("a1") is None and cache.get("a2") is not None
    control.send({"op": "disconnect", "user": "alice", "reason": "bye"})
    assert cache.get("a2") is None
    assert cache.get("b1") is not None and len(cache) == 1


def test_missed_control_messages_drop_everything_and_a_broken_channel_bypasses_the_cache() -> None:
    control = Control()
    cache = SessionCache(10, 60.0)
    cache.follow(control)
    put(cache, "a1")
    control.control_healthy = False  # revocations could not arrive now
    assert cache.get("a1") is None
    control.control_healthy = True
    assert cache.get("a1") is not None
    for listener in control.lost:  # the broker reconnected: some may have been missed
        listener()
    assert len(cache) == 0 and cache.get("a1") is None


# --- the Authenticator reads the cache ------------------------------------------------------


@pytest.fixture
def auth(db: Settings, clock: FakeClock) -> Authenticator:  # noqa: F811
    settings = db.replace(auth={**CHEAP_HASHING, "token_ttl": 600})
    return Authenticator(settings.auth, [SECRET], clock=clock)


async def test_a_cached_session_is_believed_until_a_revocation_reaches_the_cache(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    identity = await auth.verify(token)
    assert len(auth.sessions) == 1
    # Revoked behind the cache's back (a control message that never came):
    await AuthSession.filter(id=identity.session_id).update(revoked_at=auth._at(0))
    assert await auth.verify(token) == identity  # no database read: the cache answered
    auth.sessions.revoke_session(identity.session_id)  # the control message arrives
    with pytest.raises(CommandError) as exc_info:
        await auth.verify(token)
    assert exc_info.value.code == ErrorCode.UNAUTHORIZED


async def test_logout_on_this_node_stops_the_token_at_once(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    await auth.verify(token)
    await auth.logout(token)
    with pytest.raises(CommandError) as exc_info:
        await auth.verify(token)
    assert exc_info.value.code == ErrorCode.UNAUTHORIZED


async def test_a_token_of_another_user_is_not_answered_from_the_cache(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    session_id = (await auth.verify(token)).session_id
    forged = auth.tokens.issue(999, session_id)[0]  # signed, but the session is alice's
    with pytest.raises(CommandError) as exc_info:
        await auth.verify(forged)
    assert exc_info.value.code == ErrorCode.UNAUTHORIZED


async def test_concurrent_connects_missing_the_cache_read_their_sessions_in_one_query(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    await auth.register("bob", "pass-word-1")
    tokens = [(await auth.login(name, "pass-word-1", None))[0] for name in ("alice", "bob") * 5]
    revoked = await auth.verify(tokens[0])
    await AuthSession.filter(id=revoked.session_id).update(revoked_at=auth._at(0))
    auth.sessions.clear()
    before = auth.reader.queries
    results = await asyncio.gather(*(auth.verify(t) for t in tokens), return_exceptions=True)
    assert auth.reader.queries == before + 1
    assert isinstance(results[0], CommandError) and results[0].code == ErrorCode.UNAUTHORIZED
    identities = [r for r in results[1:] if not isinstance(r, BaseException)]
    assert [i.username for i in identities] == ["bob", "alice"] * 4 + ["bob"]
    assert len({i.session_id for i in identities}) == 9 and len(auth.sessions) == 9


async def test_the_reader_returns_each_session_as_the_database_holds_it(auth: Authenticator,
                                                                         clock: FakeClock) -> None:  # noqa: F811
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    claims = auth.tokens.read(token)
    session_id = uuid.UUID(claims.session_id)
    stored = await AuthSession.get(id=session_id).prefetch_related("user")
    row = await auth.reader.read(session_id)
    assert row is not None
    assert (row.user_id, row.username, row.role, row.revoked) == (stored.user.id, "alice", "user", False)
    assert row.expires_at == pytest.approx(stored.expires_at.timestamp(), abs=1e-3)
    assert row.expires_at == pytest.approx(clock.now + auth.settings.token_ttl, abs=1)
    await AuthSession.filter(id=session_id).update(revoked_at=auth._at(0))
    revoked = await auth.reader.read(session_id)
    assert revoked is not None and revoked.revoked
    assert await auth.reader.read(uuid.uuid4()) is None


async def test_a_session_past_its_expiry_is_refused_when_read_from_the_database(
        auth: Authenticator, clock: FakeClock) -> None:  # noqa: F811
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    session_id = auth.tokens.read(token).session_id
    await AuthSession.filter(id=session_id).update(expires_at=auth._at(-1))  # the token is still young
    with pytest.raises(CommandError) as exc_info:
        await auth.verify(token)
    assert exc_info.value.code == ErrorCode.TOKEN_EXPIRED


# --- a starting node fills the cache ------------------------------------------------------


async def test_preload_takes_the_valid_sessions_so_their_connects_read_no_database(
        auth: Authenticator, clock: FakeClock) -> None:  # noqa: F811
    await auth.register("alice", "pass-word-1")
    tokens = [(await auth.login("alice", "pass-word-1", None))[0] for _ in range(4)]
    revoked, expired = (auth.tokens.read(t).session_id for t in tokens[:2])
    await AuthSession.filter(id=revoked).update(revoked_at=auth._at(0))
    await AuthSession.filter(id=expired).update(expires_at=auth._at(-1))
    auth.sessions.clear()  # a node that just started
    assert await auth.preload() == 2
    before = auth.reader.queries
    identities = [await auth.verify(t) for t in tokens[2:]]
    assert auth.reader.queries == before, "answered from the preloaded cache"
    assert [i.username for i in identities] == ["alice", "alice"]
    for token, code in ((tokens[0], ErrorCode.UNAUTHORIZED), (tokens[1], ErrorCode.TOKEN_EXPIRED)):
        with pytest.raises(CommandError) as exc_info:
            await auth.verify(token)  # not preloaded: read, and refused
        assert exc_info.value.code == code
    assert auth.reader.queries > before


async def test_preload_keeps_the_newest_sessions_when_there_are_more_than_the_cache_holds(
        db: Settings, clock: FakeClock) -> None:  # noqa: F811
    auth = Authenticator(db.replace(auth={**CHEAP_HASHING, "session_cache_size": 2}).auth, [SECRET], clock=clock)
    await auth.register("alice", "pass-word-1")
    tokens = []
    for _ in range(3):
        tokens.append((await auth.login("alice", "pass-word-1", None))[0])
        clock.advance(10)  # each session expires later than the one before
    auth.sessions.clear()
    assert await auth.preload() == 2 and len(auth.sessions) == 2
    assert auth.sessions.get(auth.tokens.read(tokens[0]).session_id) is None
    assert all(auth.sessions.get(auth.tokens.read(t).session_id) for t in tokens[1:])


async def test_preload_off_or_a_revocation_meanwhile_leaves_the_cache_empty(
        db: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    off = Authenticator(db.replace(auth={**CHEAP_HASHING, "session_cache_preload": False}).auth, [SECRET], clock=clock)
    await off.register("alice", "pass-word-1")
    await off.login("alice", "pass-word-1", None)
    assert await off.preload() == 0 and len(off.sessions) == 0
    auth = Authenticator(db.replace(auth=CHEAP_HASHING).auth, [SECRET], clock=clock)
    newest = session_reader.newest

    async def revoked_while_reading(limit: int) -> Any:
        rows = await newest(limit)
        auth.sessions.revoke_session("another")  # a logout's control message arrives
        return rows

    monkeypatch.setattr(session_reader, "newest", revoked_while_reading)
    assert await auth.preload() == 0 and len(auth.sessions) == 0
