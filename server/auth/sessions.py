"""Accounts and sessions: register, log in, refresh, log out, verify a token.

A login creates an ``AuthSession`` row and a signed token naming it
(``server.auth.tokens``). Verifying a token checks the signature and its age, then
the session: in the node's cache of valid sessions
(``server.auth.session_cache``), or else in the database. A logout revokes the
session in the database and, through a control message, in every node's
cache, so the token stops everywhere. Passwords are argon2id
(``server.auth.passwords``).

Usernames are case-insensitive: they are stored and compared lower-case, the
same on every database (MySQL's default collation would otherwise fold case
and PostgreSQL's would not).

Every refusal is a ``CommandError``: ``UNAUTHORIZED``, ``TOKEN_EXPIRED``,
``CONFLICT``, ``BAD_REQUEST`` (with ``fields``) or ``TOO_MANY_REQUESTS``
(:class:`TooManyAttempts`, with ``retry_after``). Nothing here logs a token
or a password.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from tortoise.exceptions import IntegrityError

from models.user import AuthSession, Role, User
from server.auth.identity import Identity
from server.config import AuthSettings
from server.errors import CommandError, ErrorCode
from server.auth.limiter import LoginLimiter, MemoryLoginLimiter, TooManyAttempts
from server.auth.passwords import Passwords, is_common
from server.auth.session_cache import SessionCache
from server.auth import session_reader
from server.auth.session_reader import SessionReader
from server.auth.tokens import TokenClaims, TokenSigner, load_secrets

__all__ = [
    "Authenticator", "Identity", "LoginLimiter", "MemoryLoginLimiter", "TooManyAttempts",
    "check_password", "check_username", "load_secrets",
]

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 256
_BAD_CREDENTIALS = "invalid username or password"


def check_username(username: str) -> str:
    """``username`` if it is 3-32 of ``A-Z a-z 0-9 _ . -``; raises ValueError otherwise."""
    if not USERNAME_RE.fullmatch(username):
        raise ValueError("3 to 32 characters: letters, digits, '_', '.' or '-'")
    return username


def check_password(password: str) -> str:
    """``password`` if it is 8-256 characters long and not a common one; raises ValueError otherwise."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValueError(f"{PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if is_common(password):
        raise ValueError("too common: it is among the first passwords an attacker tries")
    return password


class Authenticator:
    """Registers users and manages their sessions and tokens.

    Args:
        settings: The ``[auth]`` settings.
        secrets: Token signing secrets, oldest first (see ``load_secrets``).
        clock: Wall clock for token stamps and session times; tests fake it.
        limiter: Failed-login limiter; by default one in memory, from ``settings``.
    """

    def __init__(
        self,
        settings: AuthSettings,
        secrets: list[str],
        *,
        clock: Callable[[], float] = time.time,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.passwords = Passwords.from_settings(settings)
        self.tokens = TokenSigner(secrets, settings.token_ttl, clock=clock)
        self.limiter = limiter or MemoryLoginLimiter(settings.login_max_failures, settings.login_window)
        self.sessions = SessionCache(settings.session_cache_size, settings.session_cache_ttl)
        self.reader = SessionReader()
        self._clock = clock
        self._admins = frozenset(name.lower() for name in settings.admins)

    async def register(self, username: str, password: str) -> User:
        """Create a user with the role "user".

        Raises:
            CommandError: ``BAD_REQUEST`` with ``fields`` for an invalid name or
                password, ``CONFLICT`` if the name is taken.
        """
        fields = {}
        for name, check, value in (("username", check_username, username),
                                   ("password", check_password, password)):
            try:
                check(value)
            except ValueError as exc:
                fields[name] = str(exc)
        if fields:
            raise CommandError(ErrorCode.BAD_REQUEST, "invalid fields", fields)
        username = username.lower()
        if await User.exists(username=username):
            raise _taken()
        password_hash = await self.passwords.hash(password)
        try:
            return await User.create(username=username, password_hash=password_hash)
        except IntegrityError:
            # Registered by someone else between the check and the insert.
            raise _taken() from None

    async def login(self, username: str, password: str, ip: str | None) -> tuple[str, int, User]:
        """Check a password and open a session: ``(token, expires_in, user)``.

        Raises:
            CommandError: ``UNAUTHORIZED`` for a wrong name or password, alike.
            TooManyAttempts: Too many recent failures for this IP or name.
        """
        username = username.lower()
        await self.limiter.acquire(ip, username)
        user = await User.get_or_none(username=username) if USERNAME_RE.fullmatch(username) else None
        if user is None:
            await self.passwords.verify_dummy(password)
            raise CommandError(ErrorCode.UNAUTHORIZED, _BAD_CREDENTIALS)
        if not await self.passwords.verify(user.password_hash, password):
            raise CommandError(ErrorCode.UNAUTHORIZED, _BAD_CREDENTIALS)
        await self.limiter.succeeded(ip, username)
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(password)
            await user.save(update_fields=["password_hash"])
        session = await AuthSession.create(user=user, expires_at=self._at(self.settings.token_ttl))
        token, expires_at = self.tokens.issue(user.id, str(session.id))
        return token, self._expires_in(expires_at), user

    async def change_password(self, token: str, password: str, new_password: str,
                              ip: str | None) -> tuple[Identity, list[str]]:
        """Replace the password of the token's user, and revoke every other session of theirs.

        Returns:
            Whose it was, and the ids of the sessions revoked (to close their connections).

        Raises:
            CommandError: As :meth:`verify`; ``UNAUTHORIZED`` for a wrong
                current password; ``BAD_REQUEST`` with ``fields`` for an
                invalid new one.
            TooManyAttempts: Too many recent failures for this IP or name.
        """
        identity = await self.verify(token)
        try:
            check_password(new_password)
        except ValueError as exc:
            raise CommandError(ErrorCode.BAD_REQUEST, "invalid fields", {"new_password": str(exc)}) from None
        await self.limiter.acquire(ip, identity.username)
        user = await User.get(id=identity.user_id)
        if not await self.passwords.verify(user.password_hash, password):
            raise CommandError(ErrorCode.UNAUTHORIZED, "wrong password")
        await self.limiter.succeeded(ip, identity.username)
        user.password_hash = await self.passwords.hash(new_password)
        await user.save(update_fields=["password_hash"])
        others = AuthSession.filter(user_id=user.id, revoked_at__isnull=True).exclude(id=identity.session_id)
        revoked = [str(session_id) for session_id in await others.values_list("id", flat=True)]
        for session_id in revoked:
            self.sessions.revoke_session(session_id)
        if revoked:
            await AuthSession.filter(id__in=revoked).update(revoked_at=self._at(0))
        for session_id in revoked:  # a connect may have read one back meanwhile
            self.sessions.revoke_session(session_id)
        return identity, revoked

    async def refresh(self, token: str) -> tuple[str, int, User]:
        """A new token for the same session, whose life is extended.

        Raises:
            CommandError: As :meth:`verify`.
        """
        claims = self.tokens.read(token)
        session = await self._session(claims)
        # If a logout slips in between, the new token names a revoked session
        # and verify() rejects it. (The updated row count cannot tell: MySQL
        # counts rows changed, and the expiry may not have changed.)
        await AuthSession.filter(id=session.id, revoked_at__isnull=True).update(
            expires_at=self._at(self.settings.token_ttl)
        )
        new_token, expires_at = self.tokens.issue(session.user.id, str(session.id))
        return new_token, self._expires_in(expires_at), session.user

    async def logout(self, token: str) -> Identity:
        """Revoke the session of ``token``: none of its tokens works any more.

        Returns:
            Whose session it was, e.g. to close its open connections.

        Raises:
            CommandError: As :meth:`verify`.
        """
        identity = await self.verify(token)
        self.sessions.revoke_session(identity.session_id)
        await AuthSession.filter(id=identity.session_id, revoked_at__isnull=True).update(
            revoked_at=self._at(0)
        )
        # Again: a connect may have read the session back while the update ran.
        self.sessions.revoke_session(identity.session_id)
        return identity

    async def verify(self, token: str) -> Identity:
        """Who ``token`` belongs to, if its signature, age and session are good.

        Raises:
            CommandError: ``TOKEN_EXPIRED`` for a genuine token that is too old,
                ``UNAUTHORIZED`` for any other bad token or a revoked session.
        """
        claims = self.tokens.read(token)
        cached = self.sessions.get(claims.session_id)
        if cached is not None and cached.user_id == claims.user_id and cached.expires_at > self._clock():
            return Identity(cached.user_id, cached.username, cached.role, claims.session_id, claims.expires_at)
        generation = self.sessions.generation
        try:
            session_id = uuid.UUID(claims.session_id)
        except ValueError:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token") from None
        row = await self.reader.read(session_id)
        if row is None or row.user_id != claims.user_id:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token")
        if row.revoked:
            raise CommandError(ErrorCode.UNAUTHORIZED, "session revoked")
        if row.expires_at <= self._clock():
            raise CommandError(ErrorCode.TOKEN_EXPIRED, "session expired")
        role = Role.ADMIN.value if row.username in self._admins else row.role
        canonical = str(session_id)
        self.sessions.put(canonical, row.user_id, row.username, role, row.expires_at, generation)
        return Identity(row.user_id, row.username, role, canonical, claims.expires_at)

    async def preload(self) -> int:
        """Fill the session cache with the newest valid sessions; returns how many it took.

        For a node that starts: the clients of a restart reconnect without a
        database read. One query, at most ``session_cache_size`` rows. A
        revocation that arrives meanwhile makes the cache refuse the whole
        answer (its generation moved on); those connects read the database.
        """
        cache = self.sessions
        if not (cache.size and cache.ttl and self.settings.session_cache_preload):
            return 0
        generation = cache.generation
        now = self._clock()
        taken = 0
        for session_id, row in reversed(await session_reader.newest(cache.size)):
            if row.expires_at <= now:
                continue
            role = Role.ADMIN.value if row.username in self._admins else row.role
            cache.put(session_id, row.user_id, row.username, role, row.expires_at, generation)
            taken += 1
        return taken if cache.generation == generation else 0

    def role_of(self, user: User) -> str:
        """The user's role, "admin" also for names listed in ``auth.admins``."""
        return Role.ADMIN.value if user.username in self._admins else user.role

    async def purge_sessions(self) -> int:
        """Delete sessions past their expiry (revoked or not); returns how many."""
        return await AuthSession.filter(expires_at__lt=self._at(0)).delete()

    async def _session(self, claims: TokenClaims) -> AuthSession:
        try:
            session_id = uuid.UUID(claims.session_id)
        except ValueError:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token") from None
        session = await AuthSession.get_or_none(id=session_id).select_related("user")
        if session is None or session.user.id != claims.user_id:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token")
        if session.revoked_at is not None:
            raise CommandError(ErrorCode.UNAUTHORIZED, "session revoked")
        if session.expires_at.timestamp() <= self._clock():
            raise CommandError(ErrorCode.TOKEN_EXPIRED, "session expired")
        return session

    def _at(self, seconds_from_now: float) -> datetime:
        return datetime.fromtimestamp(self._clock() + seconds_from_now, tz=timezone.utc)

    def _expires_in(self, expires_at: float) -> int:
        return max(0, int(expires_at - self._clock()))


def _taken() -> CommandError:
    return CommandError(ErrorCode.CONFLICT, "username already taken",
                        {"username": "already taken"})
