"""The accounts HTTP API, end to end through aiohttp's test client, on each database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.auth.routes import routes
from server.appkeys import AUTH, NODE, SETTINGS
from server.api.errors import error_middleware
from server.app import auth_ctx, database_ctx
from server.config import Settings
from server.errors import ErrorCode

MAX_FAILURES = 3
# For checks that fail before any query: one backend is enough.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
CHEAP_HASHING = {"password_time_cost": 1, "password_memory_cost": 8, "password_parallelism": 1}


class FakeNode:
    """Stands in for ``server.node.Node``: records the sessions it was told to close."""

    def __init__(self) -> None:
        self.disconnected: list[str] = []

    async def disconnect_session(self, session_id: str, reason: str = "logged out") -> None:
        self.disconnected.append(session_id)


def make_app(settings: Settings, node: FakeNode | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    if node is not None:
        app[NODE] = node  # type: ignore[assignment]
    app.cleanup_ctx.extend([database_ctx, auth_ctx])
    app.add_routes(routes)
    return app


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(base_dir=str(tmp_path)).replace(
        database={"url": database_url},
        auth={**CHEAP_HASHING, "login_max_failures": MAX_FAILURES, "admins": ("root",)},
    )


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, node: FakeNode) -> TestClient:
    return await aiohttp_client(make_app(settings, node))


async def assert_error(response: Any, status: int, code: ErrorCode) -> dict[str, Any]:
    """Check an error response and return its ``error`` object."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    return body["error"]


async def register(client: TestClient, username: str = "alice",
                   password: str = "pass-word-1") -> Any:
    return await client.post("/api/auth/register", json={"username": username,
                                                          "password": password})


async def login(client: TestClient, username: str = "alice", password: str = "pass-word-1") -> Any:
    return await client.post("/api/auth/login", json={"username": username,
                                                       "password": password})


async def token_of(client: TestClient, username: str = "alice") -> str:
    await register(client, username)
    response = await login(client, username)
    assert response.status == 200
    return (await response.json())["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_creates_a_user(client: TestClient) -> None:
    response = await register(client, "Alice")
    assert response.status == 201
    body = await response.json()
    assert body == {"user": {"id": body["user"]["id"], "username": "alice", "role": "user"}}


async def test_register_taken_name_is_409(client: TestClient) -> None:
    await register(client)
    error = await assert_error(await register(client, "ALICE"), 409, ErrorCode.CONFLICT)
    assert error["fields"] == {"username": "already taken"}


@sqlite_only
async def test_register_invalid_fields_are_422_per_field(client: TestClient) -> None:
    response = await client.post("/api/auth/register", json={"username": "a!", "password": "short"})
    error = await assert_error(response, 422, ErrorCode.BAD_REQUEST)
    assert set(error["fields"]) == {"username", "password"}
    assert "letters, digits" in error["fields"]["username"]
    assert "8 to 256" in error["fields"]["password"]


@sqlite_only
@pytest.mark.parametrize("password", ["password", "PassWord1", "iloveyou", "qwertyuiop", "123456789"])
async def test_common_passwords_are_refused_in_any_case(client: TestClient, password: str) -> None:
    error = await assert_error(await register(client, "carol", password), 422, ErrorCode.BAD_REQUEST)
    assert error["fields"] == {"password": "too common: it is among the first passwords an attacker tries"}


@sqlite_only
async def test_an_uncommon_password_of_the_minimum_length_is_taken(client: TestClient) -> None:
    response = await register(client, "dave", "zq8!mv2k")
    assert response.status == 201, await response.text()


@sqlite_only
@pytest.mark.parametrize("body", [{}, {"username": "alice"}, {"username": 5, "password": "x" * 9}])
async def test_register_missing_or_mistyped_fields_are_422(
    client: TestClient, body: dict[str, Any]
) -> None:
    error = await assert_error(await client.post("/api/auth/register", json=body),
                               422, ErrorCode.BAD_REQUEST)
    assert error["fields"]


@sqlite_only
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"'])
async def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    for path in ("/api/auth/register", "/api/auth/login"):
        response = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
        error = await assert_error(response, 400, ErrorCode.BAD_REQUEST)
        assert "fields" not in error


async def test_login_returns_a_token(client: TestClient) -> None:
    await register(client)
    response = await login(client, "ALICE")
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"token", "expires_in", "user"}
    assert 0 < body["expires_in"] <= 3600
    assert body["user"]["username"] == "alice"


async def test_unknown_user_and_wrong_password_look_the_same(client: TestClient) -> None:
    await register(client)
    wrong_password = await login(client, "alice", "wrong-password")
    unknown_user = await login(client, "nobody", "pass-word-1")
    assert wrong_password.status == unknown_user.status == 401
    assert await wrong_password.read() == await unknown_user.read()


async def test_repeated_failures_are_429_with_retry_after(client: TestClient) -> None:
    await register(client)
    for _ in range(MAX_FAILURES):
        await assert_error(await login(client, "alice", "wrong-password"),
                           401, ErrorCode.UNAUTHORIZED)
    response = await login(client, "alice", "pass-word-1")
    error = await assert_error(response, 429, ErrorCode.TOO_MANY_REQUESTS)
    assert error["temporary"] is True
    assert 0 < int(response.headers["Retry-After"]) <= 300


async def test_me_with_token(client: TestClient) -> None:
    token = await token_of(client, "root")
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status == 200
    user = (await response.json())["user"]
    assert (user["username"], user["role"]) == ("root", "admin")


@sqlite_only
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer not-a-token"}])
async def test_me_without_a_valid_token_is_401(
    client: TestClient, headers: dict[str, str]
) -> None:
    await assert_error(await client.get("/api/me", headers=headers), 401, ErrorCode.UNAUTHORIZED)


async def test_refresh_gives_a_working_token(client: TestClient) -> None:
    token = await token_of(client)
    response = await client.post("/api/auth/refresh", headers=bearer(token))
    assert response.status == 200
    body = await response.json()
    assert body["expires_in"] > 0 and body["user"]["username"] == "alice"
    me = await client.get("/api/me", headers=bearer(body["token"]))
    assert me.status == 200


@sqlite_only
async def test_refresh_without_token_is_401(client: TestClient) -> None:
    await assert_error(await client.post("/api/auth/refresh"), 401, ErrorCode.UNAUTHORIZED)


async def test_logout_kills_the_token_and_its_connections(
    client: TestClient, node: FakeNode
) -> None:
    token = await token_of(client)
    refreshed = await (await client.post("/api/auth/refresh", headers=bearer(token))).json()
    session_id = (await client.app[AUTH].verify(token)).session_id

    response = await client.post("/api/auth/logout", headers=bearer(token))
    assert response.status == 200
    assert await response.json() == {}
    assert node.disconnected == [session_id]

    for dead in (token, refreshed["token"]):
        await assert_error(await client.get("/api/me", headers=bearer(dead)),
                           401, ErrorCode.UNAUTHORIZED)
    await assert_error(await client.post("/api/auth/refresh", headers=bearer(token)),
                       401, ErrorCode.UNAUTHORIZED)
    await assert_error(await client.post("/api/auth/logout", headers=bearer(token)),
                       401, ErrorCode.UNAUTHORIZED)
    assert node.disconnected == [session_id]  # not again


async def test_logout_works_without_a_node(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(make_app(settings))
    token = await token_of(client)
    response = await client.post("/api/auth/logout", headers=bearer(token))
    assert response.status == 200
    await assert_error(await client.get("/api/me", headers=bearer(token)),
                       401, ErrorCode.UNAUTHORIZED)


async def test_a_password_change_revokes_the_other_sessions(client: TestClient, node: FakeNode) -> None:
    token = await token_of(client)
    other = (await (await login(client, "alice")).json())["token"]
    other_session = (await client.app[AUTH].verify(other)).session_id
    path = "/api/auth/password"

    wrong = {"password": "not the password", "new_password": "a brand new one"}
    await assert_error(await client.post(path, json=wrong, headers=bearer(token)), 401, ErrorCode.UNAUTHORIZED)
    weak = {"password": "pass-word-1", "new_password": "short"}
    error = await assert_error(await client.post(path, json=weak, headers=bearer(token)), 422, ErrorCode.BAD_REQUEST)
    assert set(error["fields"]) == {"new_password"}
    await assert_error(await client.post(path, json=wrong), 401, ErrorCode.UNAUTHORIZED)  # no token
    assert node.disconnected == []

    response = await client.post(path, json={"password": "pass-word-1", "new_password": "a brand new one"},
                                 headers=bearer(token))
    assert response.status == 200 and await response.json() == {}
    assert node.disconnected == [other_session]
    await assert_error(await client.get("/api/me", headers=bearer(other)), 401, ErrorCode.UNAUTHORIZED)
    assert (await client.get("/api/me", headers=bearer(token))).status == 200  # the caller's session stays
    await assert_error(await login(client, "alice"), 401, ErrorCode.UNAUTHORIZED)  # the old password
    body = {"username": "alice", "password": "a brand new one"}
    assert (await client.post("/api/auth/login", json=body)).status == 200
