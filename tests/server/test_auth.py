"""Passwords, tokens, secrets, the login limiter, and the Authenticator on each database."""

from __future__ import annotations

import asyncio
import stat
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from argon2 import PasswordHasher
from itsdangerous import URLSafeTimedSerializer

from models.user import AuthSession, Role, User
from server.appkeys import AUTH, SETTINGS
from server.app import auth_ctx, database_ctx
from server.auth.sessions import Authenticator, MemoryLoginLimiter, TooManyAttempts
from server.config import ConfigError, Settings, load_settings
from server.errors import CommandError, ErrorCode
from server.auth.passwords import Passwords
from server.auth.tokens import CLOCK_SKEW, SALT, TokenSigner, load_secrets

CHEAP_HASHING = {"password_time_cost": 1, "password_memory_cost": 8, "password_parallelism": 1}
TTL = 600
SECRET = "s" * 43


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def assert_error(exc_info: pytest.ExceptionInfo[CommandError], code: ErrorCode) -> None:
    assert exc_info.value.code == code, exc_info.value


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: session times go to the database next to
    # created_at, which is the real one.
    return FakeClock(float(int(time.time())))


# --- passwords ---------------------------------------------------------------------------


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_cost=8, parallelism=1)


async def test_password_hash_verifies_only_the_same_password(passwords: Passwords) -> None:
    hashed = await passwords.hash("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert "correct horse" not in hashed
    assert await passwords.verify(hashed, "correct horse")
    assert not await passwords.verify(hashed, "correct horsE")
    assert await passwords.hash("correct horse") != hashed  # salted


async def test_corrupt_hash_never_verifies(passwords: Passwords) -> None:
    assert not await passwords.verify("not-a-hash", "anything")
    assert passwords.needs_rehash("not-a-hash")


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every argon2 ``hash`` and ``verify`` of the test, with the thread that ran it.

    The library's own methods are wrapped, not replaced: the hashing is real.
    """
    calls: list[tuple[str, int]] = []
    for name in ("hash", "verify"):
        original = getattr(PasswordHasher, name)

        def recording(self, *args, _original=original, _name=name, **kwargs):
            calls.append((_name, threading.get_ident()))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(PasswordHasher, name, recording)
    return calls


async def test_hashing_runs_off_the_event_loop(passwords: Passwords, argon2_calls) -> None:
    assert await passwords.verify(await passwords.hash("password"), "password")
    assert [name for name, _ in argon2_calls] == ["hash", "verify"]
    assert threading.get_ident() not in {thread for _, thread in argon2_calls}


async def test_dummy_verify_is_prepared_once(passwords: Passwords, argon2_calls) -> None:
    await passwords.prepare()
    await passwords.prepare()
    assert [name for name, _ in argon2_calls] == ["hash"]
    argon2_calls.clear()
    await passwords.verify_dummy("whatever")
    await passwords.verify_dummy("something else")
    # A real verification each time (that is the point), never a new hash.
    assert [name for name, _ in argon2_calls] == ["verify", "verify"]


async def test_dummy_verify_prepares_itself_when_nobody_did(passwords: Passwords, argon2_calls) -> None:
    await passwords.verify_dummy("whatever")
    await passwords.verify_dummy("whatever")
    assert [name for name, _ in argon2_calls] == ["hash", "verify", "verify"]


async def test_hash_with_other_parameters_needs_rehash(passwords: Passwords) -> None:
    stronger = Passwords(time_cost=2, memory_cost=16, parallelism=1)
    hashed = await passwords.hash("password")
    assert not passwords.needs_rehash(hashed)
    assert stronger.needs_rehash(hashed)
    assert await stronger.verify(hashed, "password")


# --- tokens --------------------------------------------------------------------------------


def test_token_carries_user_and_session(clock: FakeClock) -> None:
    signer = TokenSigner([SECRET], TTL, clock=clock)
    token, expires_at = signer.issue(7, "session-1")
    claims = signer.read(token)
    assert (claims.user_id, claims.session_id) == (7, "session-1")
    assert claims.issued_at == clock.now
    assert claims.expires_at == expires_at == clock.now + TTL


def test_token_expires_after_ttl(clock: FakeClock) -> None:
    signer = TokenSigner([SECRET], TTL, clock=clock)
    token, _ = signer.issue(1, "s")
    clock.advance(TTL)
    signer.read(token)
    clock.advance(1)
    with pytest.raises(CommandError) as exc_info:
        signer.read(token)
    assert_error(exc_info, ErrorCode.TOKEN_EXPIRED)


def test_token_from_a_clock_slightly_ahead_is_accepted(clock: FakeClock) -> None:
    ahead = FakeClock(clock.now + CLOCK_SKEW)
    token, _ = TokenSigner([SECRET], TTL, clock=ahead).issue(1, "s")
    assert TokenSigner([SECRET], TTL, clock=clock).read(token).user_id == 1
    far_ahead = FakeClock(clock.now + CLOCK_SKEW + 5)
    token, _ = TokenSigner([SECRET], TTL, clock=far_ahead).issue(1, "s")
    with pytest.raises(CommandError):
        TokenSigner([SECRET], TTL, clock=clock).read(token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 5000])
def test_malformed_token_is_unauthorized(clock: FakeClock, token: str) -> None:
    with pytest.raises(CommandError) as exc_info:
        TokenSigner([SECRET], TTL, clock=clock).read(token)
    assert_error(exc_info, ErrorCode.UNAUTHORIZED)


def test_tampered_token_is_unauthorized(clock: FakeClock) -> None:
    signer = TokenSigner([SECRET], TTL, clock=clock)
    token, _ = signer.issue(1, "s")
    other, _ = signer.issue(2, "s")
    forged = other.split(".")[0] + "." + ".".join(token.split(".")[1:])
    with pytest.raises(CommandError) as exc_info:
        signer.read(forged)
    assert_error(exc_info, ErrorCode.UNAUTHORIZED)


def test_token_of_another_purpose_is_unauthorized(clock: FakeClock) -> None:
    token = URLSafeTimedSerializer(SECRET, salt="something-else").dumps({"u": 1, "s": "s"})
    with pytest.raises(CommandError):
        TokenSigner([SECRET], TTL, clock=clock).read(token)
    # The same serializer with our salt is what a token is.
    token = URLSafeTimedSerializer(SECRET, salt=SALT).dumps({"u": 1, "s": "s"})
    assert TokenSigner([SECRET], TTL).read(token).user_id == 1


def test_rotation_newest_signs_and_all_verify(clock: FakeClock) -> None:
    old_token, _ = TokenSigner(["old-secret"], TTL, clock=clock).issue(1, "s")
    rotated = TokenSigner(["old-secret", "new-secret"], TTL, clock=clock)
    assert rotated.read(old_token).user_id == 1
    new_token, _ = rotated.issue(2, "s")
    assert TokenSigner(["new-secret"], TTL, clock=clock).read(new_token).user_id == 2
    with pytest.raises(CommandError):
        TokenSigner(["old-secret"], TTL, clock=clock).read(new_token)


def test_the_fast_path_accepts_exactly_the_current_well_signed_tokens_itsdangerous_accepts(clock: FakeClock) -> None:
    signer = TokenSigner(["old-secret", SECRET], TTL, clock=clock)
    token, _ = signer.issue(7, "s1")
    old, _ = TokenSigner(["old-secret"], TTL, clock=clock).issue(8, "s2")
    other, _ = signer.issue(9, "s3")
    unsigned = other.split(".")[0] + "." + ".".join(token.split(".")[1:])
    foreign = URLSafeTimedSerializer(SECRET, salt="something-else").dumps({"u": 1, "s": "s"})
    ahead, _ = TokenSigner([SECRET], TTL, clock=FakeClock(clock.now + 5)).issue(1, "s")
    plain = URLSafeTimedSerializer(SECRET, salt=SALT).dumps({"u": 3, "s": "s4"})
    for good in (token, old, plain):
        fast = signer._read_current(good)
        assert fast is not None and fast == signer._read_full(good)
    for bad in (unsigned, foreign, token[:-2], token + "x", "a.b.c", "é.b.c", ahead):
        assert signer._read_current(bad) is None  # left to itsdangerous, which says why
    clock.advance(TTL + 1)
    assert signer._read_current(token) is None
    with pytest.raises(CommandError) as exc_info:
        signer.read(token)
    assert_error(exc_info, ErrorCode.TOKEN_EXPIRED)


def test_removed_secret_no_longer_verifies(clock: FakeClock) -> None:
    old_token, _ = TokenSigner(["old-secret"], TTL, clock=clock).issue(1, "s")
    with pytest.raises(CommandError) as exc_info:
        TokenSigner(["new-secret"], TTL, clock=clock).read(old_token)
    assert_error(exc_info, ErrorCode.UNAUTHORIZED)


@pytest.mark.parametrize("secrets", [[], [""]])
def test_signer_needs_a_secret(secrets: list[str]) -> None:
    with pytest.raises(ConfigError):
        TokenSigner(secrets, TTL)


# --- secrets -------------------------------------------------------------------------------


def test_configured_secrets_are_used_in_order(tmp_path: Path) -> None:
    settings = Settings(base_dir=str(tmp_path)).replace(auth={"secrets": ("old", "new")})
    assert load_secrets(settings) == ["old", "new"]
    assert not (tmp_path / ".stagewire").exists()


def test_secrets_from_environment_are_oldest_first(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    settings = load_settings(tmp_path / "config.toml",
                             environ={"STAGEWIRE_AUTH__SECRETS": "old-one,new-one"})
    assert load_secrets(settings) == ["old-one", "new-one"]


def test_secret_file_is_generated_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(base_dir=str(tmp_path))
    first = load_secrets(settings)
    path = tmp_path / ".stagewire" / "secret"
    assert len(first) == 1 and len(first[0]) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secrets(settings) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary left


def test_secret_file_lists_secrets_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old\n\nnew\n")
    settings = Settings(base_dir=str(tmp_path)).replace(auth={"secret_file": "keys"})
    assert load_secrets(settings) == ["old", "new"]


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("\n")
    settings = Settings(base_dir=str(tmp_path)).replace(auth={"secret_file": "keys"})
    with pytest.raises(ConfigError):
        load_secrets(settings)


# --- login limiter -------------------------------------------------------------------------


async def test_limiter_refuses_after_max_failures_until_the_window_passes(clock: FakeClock) -> None:
    limiter = MemoryLoginLimiter(3, 60, clock=clock)
    for _ in range(3):
        await limiter.acquire("1.1.1.1", "alice")
        clock.advance(10)
    with pytest.raises(TooManyAttempts) as exc_info:
        await limiter.acquire("1.1.1.1", "alice")
    assert exc_info.value.code == ErrorCode.TOO_MANY_REQUESTS
    assert exc_info.value.retry_after == 30  # the first failure was 30 s ago
    clock.advance(30)
    await limiter.acquire("1.1.1.1", "alice")


async def test_limiter_counts_per_ip_across_usernames(clock: FakeClock) -> None:
    limiter = MemoryLoginLimiter(2, 60, clock=clock)
    await limiter.acquire("1.1.1.1", "a")
    await limiter.acquire("1.1.1.1", "b")
    with pytest.raises(TooManyAttempts):
        await limiter.acquire("1.1.1.1", "c")
    await limiter.acquire("2.2.2.2", "c")


async def test_limiter_counts_per_username_across_ips(clock: FakeClock) -> None:
    limiter = MemoryLoginLimiter(2, 60, clock=clock)
    await limiter.acquire("1.1.1.1", "alice")
    await limiter.acquire("2.2.2.2", "alice")
    with pytest.raises(TooManyAttempts):
        await limiter.acquire("3.3.3.3", "alice")
    await limiter.acquire("3.3.3.3", "bob")


async def test_limiter_forgives_a_success(clock: FakeClock) -> None:
    limiter = MemoryLoginLimiter(2, 60, clock=clock)
    await limiter.acquire("1.1.1.1", "alice")
    await limiter.acquire("1.1.1.1", "alice")
    await limiter.succeeded("1.1.1.1", "alice")
    await limiter.acquire("1.1.1.1", "alice")  # one failure left on the IP, none on the name
    with pytest.raises(TooManyAttempts):
        await limiter.acquire("1.1.1.1", "bob")


async def test_limiter_without_ip_limits_the_username(clock: FakeClock) -> None:
    limiter = MemoryLoginLimiter(1, 60, clock=clock)
    await limiter.acquire(None, "alice")
    with pytest.raises(TooManyAttempts):
        await limiter.acquire(None, "alice")


async def test_limiter_size_is_bounded(clock: FakeClock) -> None:
    limiter = MemoryLoginLimiter(1, 60, max_entries=4, clock=clock)
    await limiter.acquire("1.1.1.1", "alice")
    for n in range(10):
        await limiter.acquire(f"10.0.0.{n}", f"user{n}")
    assert len(limiter) == 4
    await limiter.acquire("1.1.1.1", "alice")  # evicted, so allowed again


# --- authenticator, on each database ------------------------------------------------------


@pytest.fixture
def settings(db: Settings) -> Settings:
    return db.replace(auth={**CHEAP_HASHING, "token_ttl": TTL, "login_max_failures": 3,
                            "admins": ("Root",)})


@pytest.fixture
def auth(settings: Settings, clock: FakeClock) -> Authenticator:
    limiter = MemoryLoginLimiter(3, 60, clock=clock)
    return Authenticator(settings.auth, [SECRET], clock=clock, limiter=limiter)


async def test_register_stores_a_hashed_lower_case_user(auth: Authenticator) -> None:
    user = await auth.register("Alice", "pass-word-1")
    stored = await User.get(id=user.id)
    assert (stored.username, stored.role) == ("alice", Role.USER)
    assert stored.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize("name", ["alice", "ALICE"])
async def test_register_taken_name_conflicts(auth: Authenticator, name: str) -> None:
    await auth.register("alice", "pass-word-1")
    with pytest.raises(CommandError) as exc_info:
        await auth.register(name, "pass-word-2")
    assert_error(exc_info, ErrorCode.CONFLICT)


async def test_register_race_on_the_unique_index_conflicts(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await auth.register("alice", "pass-word-1")

    async def not_yet(**_: object) -> bool:  # as if the other insert came after our check
        return False

    monkeypatch.setattr(User, "exists", not_yet)
    with pytest.raises(CommandError) as exc_info:
        await auth.register("alice", "pass-word-2")
    assert_error(exc_info, ErrorCode.CONFLICT)
    assert await User.filter(username="alice").count() == 1


async def test_register_rejects_invalid_fields(auth: Authenticator) -> None:
    with pytest.raises(CommandError) as exc_info:
        await auth.register("a b", "short")
    assert_error(exc_info, ErrorCode.BAD_REQUEST)
    assert set(exc_info.value.fields or {}) == {"username", "password"}


async def test_login_then_verify(auth: Authenticator, clock: FakeClock) -> None:
    user = await auth.register("alice", "pass-word-1")
    token, expires_in, logged_in = await auth.login("Alice", "pass-word-1", "1.1.1.1")
    assert expires_in == TTL and logged_in.id == user.id
    identity = await auth.verify(token)
    assert (identity.user_id, identity.username, identity.role) == (user.id, "alice", "user")
    assert identity.expires_at == clock.now + TTL
    session = await AuthSession.get(id=identity.session_id)
    assert session.revoked_at is None and session.expires_at.timestamp() == clock.now + TTL


async def test_wrong_password_and_unknown_user_fail_alike(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await auth.register("alice", "pass-word-1")
    dummies = []
    real_dummy = auth.passwords.verify_dummy

    async def spy(password: str) -> None:
        dummies.append(password)
        await real_dummy(password)

    monkeypatch.setattr(auth.passwords, "verify_dummy", spy)
    errors = []
    for name, password in [("alice", "wrong-password"), ("nobody", "pass-word-1"), ("x", "y")]:
        with pytest.raises(CommandError) as exc_info:
            await auth.login(name, password, None)
        errors.append(exc_info.value.to_dict())
    assert errors[0] == errors[1] == errors[2]
    assert errors[0]["code"] == ErrorCode.UNAUTHORIZED
    assert dummies == ["pass-word-1", "y"]  # the unknown names still cost a hash


async def test_login_is_limited_even_with_the_right_password(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    for _ in range(3):
        with pytest.raises(CommandError):
            await auth.login("alice", "wrong-password", "1.1.1.1")
    with pytest.raises(TooManyAttempts):
        await auth.login("alice", "pass-word-1", "2.2.2.2")


async def test_login_rehashes_an_outdated_hash(auth: Authenticator) -> None:
    old_hash = await Passwords(time_cost=2, memory_cost=8, parallelism=1).hash("pass-word-1")
    user = await User.create(username="alice", password_hash=old_hash)
    await auth.login("alice", "pass-word-1", None)
    new_hash = (await User.get(id=user.id)).password_hash
    assert new_hash != old_hash and not auth.passwords.needs_rehash(new_hash)


async def test_admins_from_settings_and_database(auth: Authenticator) -> None:
    await auth.register("root", "pass-word-1")
    token, _, user = await auth.login("root", "pass-word-1", None)
    assert auth.role_of(user) == "admin"
    assert (await auth.verify(token)).role == "admin"
    await User.create(username="boss", password_hash="x", role=Role.ADMIN)
    assert auth.role_of(await User.get(username="boss")) == "admin"


async def test_expired_token_is_token_expired(auth: Authenticator, clock: FakeClock) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    clock.advance(TTL + 1)
    with pytest.raises(CommandError) as exc_info:
        await auth.verify(token)
    assert_error(exc_info, ErrorCode.TOKEN_EXPIRED)


async def test_refresh_extends_the_same_session(auth: Authenticator, clock: FakeClock) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    clock.advance(TTL - 10)
    refreshed_at = clock.now
    new_token, expires_in, user = await auth.refresh(token)
    assert expires_in == TTL and user.username == "alice"
    clock.advance(20)
    with pytest.raises(CommandError) as exc_info:
        await auth.verify(token)
    assert_error(exc_info, ErrorCode.TOKEN_EXPIRED)
    identity = await auth.verify(new_token)
    assert identity.expires_at == refreshed_at + TTL
    assert await AuthSession.all().count() == 1


async def test_logout_revokes_every_token_of_the_session(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    refreshed, _, _ = await auth.refresh(token)
    other, _, _ = await auth.login("alice", "pass-word-1", None)
    identity = await auth.logout(token)
    for dead in (token, refreshed):
        with pytest.raises(CommandError) as exc_info:
            await auth.verify(dead)
        assert_error(exc_info, ErrorCode.UNAUTHORIZED)
    with pytest.raises(CommandError):
        await auth.refresh(refreshed)
    with pytest.raises(CommandError):
        await auth.logout(refreshed)
    assert (await auth.verify(other)).session_id != identity.session_id
    assert (await AuthSession.get(id=identity.session_id)).revoked_at is not None


async def test_token_for_another_user_or_no_session_is_unauthorized(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    session_id = (await auth.verify(token)).session_id
    for forged in (auth.tokens.issue(999, session_id)[0],
                   auth.tokens.issue(1, "not-a-uuid")[0],
                   auth.tokens.issue(1, "00000000-0000-0000-0000-000000000000")[0]):
        with pytest.raises(CommandError) as exc_info:
            await auth.verify(forged)
        assert_error(exc_info, ErrorCode.UNAUTHORIZED)


async def test_purge_deletes_only_expired_sessions(auth: Authenticator, clock: FakeClock) -> None:
    await auth.register("alice", "pass-word-1")
    await auth.login("alice", "pass-word-1", None)
    clock.advance(TTL + 1)
    token, _, _ = await auth.login("alice", "pass-word-1", None)
    assert await auth.purge_sessions() == 1
    await auth.verify(token)


async def test_auth_ctx_stores_an_authenticator(database_url: str, tmp_path: Path) -> None:
    settings = Settings(base_dir=str(tmp_path)).replace(
        database={"url": database_url}, auth=CHEAP_HASHING)
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([database_ctx, auth_ctx])
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        auth = app[AUTH]
        await auth.register("alice", "pass-word-1")
        token, _, _ = await auth.login("alice", "pass-word-1", None)
        assert (await auth.verify(token)).username == "alice"
        assert (Path(settings.base_dir) / ".stagewire" / "secret").exists()
    finally:
        await runner.cleanup()


async def test_parallel_attempts_count_before_they_finish(auth: Authenticator) -> None:
    await auth.register("alice", "pass-word-1")
    results = await asyncio.gather(*(auth.login("alice", "pass-word-1", None) for _ in range(4)),
                                   return_exceptions=True)
    assert [type(r) for r in results].count(tuple) == 3
    assert isinstance(results[3], TooManyAttempts)
