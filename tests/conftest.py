"""Shared fixtures: test settings, a live server, accounts and WebSocket clients."""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from handlers import REGISTRY
from server.app import create_app
from server.config import Settings, settings_from_dict
from tests.helpers import WSClient, connect_ws

pytest_plugins = ["tests.databases"]

REQUIRE_SERVICES = os.environ.get("STAGEWIRE_REQUIRE_SERVICES") == "1"

API_KEY = "test-api-key"

NAMESPACES: dict[str, dict[str, Any]] = {
    "chat": {"subscribe": "authenticated", "publish": "client", "join_leave": True, "presence": True},
    "news": {"subscribe": "authenticated", "publish": "server"},
    "user": {"subscribe": "owner", "publish": "server"},
    "room": {"subscribe": "authenticated", "publish": "subscriber"},
    "ops": {"subscribe": "admin", "publish": "server"},
    "quiet": {"subscribe": "authenticated", "publish": "client", "join_leave": False},
}


def make_settings(tmp_path, **sections: Any) -> Settings:
    """Settings for one test: SQLite in ``tmp_path``, the memory broker, cheap hashing."""
    raw: dict[str, Any] = {
        "server": {"use_uvloop": False, "static_dir": str(tmp_path / "static"), "shutdown_timeout": 2.0},
        "auth": {
            "secrets": ["test-secret"],
            "password_time_cost": 1,
            "password_memory_cost": 1024,
            "admins": ["root"],
        },
        "database": {"url": f"sqlite://{tmp_path}/stagewire.sqlite3"},
        "api": {"keys": [API_KEY]},
        "namespaces": NAMESPACES,
    }
    for name, values in sections.items():
        if name == "namespaces" or isinstance(values, list):  # namespaces, arrays of tables ([[webhooks]])
            raw[name] = values
        else:
            raw.setdefault(name, {}).update(values)
    return settings_from_dict(raw, base_dir=str(tmp_path), sections=REGISTRY.sections)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


class Stagewire:
    """A live server on a real port, with helpers to make accounts and clients."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.url = str(server.make_url(""))
        self.ws_url = self.url.replace("http", "ws", 1) + "/ws"
        self.app = server.app
        self._clients: list[WSClient] = []

    async def register(self, username: str, password: str = "correct horse") -> dict:
        async with self.http.post(f"{self.url}/api/auth/register", json={"username": username, "password": password}) as r:
            assert r.status == 201, await r.text()
            return await r.json()

    async def login(self, username: str, password: str = "correct horse") -> str:
        async with self.http.post(f"{self.url}/api/auth/login", json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["token"]

    async def token(self, username: str) -> str:
        """Register ``username`` (once) and log in."""
        async with self.http.post(f"{self.url}/api/auth/register", json={"username": username, "password": "correct horse"}) as r:
            assert r.status in (201, 409), await r.text()
        return await self.login(username)

    async def client(self, username: str | None = None, *, token: str | None = None,
                     subprotocol: str | None = "stagewire.json", **kwargs: Any) -> WSClient:
        """A connected and authenticated WebSocket client."""
        if token is None:
            assert username is not None
            token = await self.token(username)
        client = await connect_ws(self.ws_url, subprotocol=subprotocol, **kwargs)
        self._clients.append(client)
        reply = await client.call("connect", token=token)
        assert "result" in reply, reply
        client.connect_result = reply["result"]
        return client

    async def raw_client(self, subprotocol: str | None = "stagewire.json", **kwargs: Any) -> WSClient:
        """A WebSocket client that has not sent connect yet."""
        client = await connect_ws(self.ws_url, subprotocol=subprotocol, **kwargs)
        self._clients.append(client)
        return client

    async def api(self, method: str, path: str, body: Any = None, key: str | None = API_KEY) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.http.request(method, f"{self.url}{path}", json=body, headers=headers) as r:
            return r.status, await r.json()

    async def close_clients(self) -> None:
        for client in self._clients:
            await client.close()


@pytest.fixture
async def make_stagewire(aiohttp_server) -> AsyncIterator[Callable[..., Awaitable[Stagewire]]]:
    """Start a server with the given settings; everything is torn down after the test."""
    started: list[Stagewire] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(settings: Settings, **app_options: Any) -> Stagewire:
        server = await aiohttp_server(create_app(settings, **app_options))
        http = aiohttp.ClientSession()
        sessions.append(http)
        sw = Stagewire(server, http)
        started.append(sw)
        return sw

    yield start
    for sw in started:
        await sw.close_clients()
    for http in sessions:
        await http.close()


@pytest.fixture
async def stagewire(make_stagewire, settings) -> Stagewire:
    return await make_stagewire(settings)
