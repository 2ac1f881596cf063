"""Fixtures of the rooms tests: a server with the rooms namespaces, on each database."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import NAMESPACES, Stagewire, make_settings
from tests.helpers import WSClient

ROOMS_NAMESPACES: dict[str, dict[str, Any]] = {
    **NAMESPACES,
    "room": {"subscribe": "custom", "publish": "server", "join_leave": True, "presence": True},
    "typing": {"subscribe": "custom", "publish": "server", "history_size": 0},
}

# Two fixed test keys (32 bytes each, base64); never use them anywhere else.
OLD_KEY = "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleTA="
NEW_KEY = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleTE="


def rooms_settings(tmp_path, database_url: str, **rooms: Any):
    return make_settings(tmp_path, database={"url": database_url}, namespaces=ROOMS_NAMESPACES,
                         rooms=rooms)


@pytest.fixture
async def sw(make_stagewire, tmp_path, database_url) -> Stagewire:
    """A server on each database, with the rooms namespaces."""
    return await make_stagewire(rooms_settings(tmp_path, database_url))


async def create_room(client: WSClient, name: str = "general", **options: Any) -> dict:
    return (await client.result("rooms.create", name=name, **options))["room"]


async def auth_headers(sw: Stagewire, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await sw.token(username)}"}


async def http(sw: Stagewire, method: str, path: str, headers: dict[str, str], body: Any = None,
               **query: Any) -> tuple[int, Any]:
    async with sw.http.request(method, f"{sw.url}{path}", json=body, headers=headers,
                               params=query or None) as r:
        return r.status, await r.json()
