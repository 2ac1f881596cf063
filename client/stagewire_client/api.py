"""``ServerAPI``: the server HTTP API, for backends (publish, broadcast, channels, disconnect).

    async with ServerAPI("http://127.0.0.1:8080", api_key) as api:
        await api.publish("news:main", {"headline": "..."})

The API key travels only in the ``Authorization`` header. Errors are
:class:`~stagewire_client.errors.StagewireError` (e.g. code 102 for an
unknown namespace, 101 for a bad key) and
:class:`~stagewire_client.errors.CannotConnect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import aiohttp

from stagewire_client import protocol
from stagewire_client._http import request_json
from stagewire_client.errors import StagewireError
from stagewire_client.protocol import Position


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """One channel of a broadcast: its new position, or why it failed."""

    channel: str
    position: Position | None
    error: StagewireError | None


class ServerAPI:
    """A client of Stagewire's server HTTP API.

    Args:
        url: The server's base URL, ``http://host:8080`` (a ``ws://`` URL is turned into that).
        api_key: One of ``[api] keys``, or a key from ``stagewire apikey create``.
        timeout: Time limit of each request, in seconds.
        session: An aiohttp session to use (and not close); one of its own by default.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.url = protocol.http_url(url).rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> ServerAPI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session, if it is this client's own."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def publish(self, channel: str, data: Any, *, idempotency_key: str | None = None) -> Position:
        """Publish ``data`` to ``channel`` (any namespace, even ``publish = "server"`` ones)."""
        body: dict[str, Any] = {"channel": channel, "data": data}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return protocol.position(await self._call("POST", "/api/publish", body))

    async def broadcast(self, channels: Sequence[str], data: Any) -> list[BroadcastResult]:
        """Publish ``data`` to each of ``channels``; one result per channel, in order."""
        answer = await self._call("POST", "/api/broadcast", {"channels": list(channels), "data": data})
        results = []
        for entry in answer.get("results", []):
            if "error" in entry:
                results.append(BroadcastResult(entry["channel"], None, StagewireError.from_dict(entry["error"])))
            else:
                results.append(BroadcastResult(entry["channel"], protocol.position(entry), None))
        return results

    async def channels(self) -> dict[str, int]:
        """Channels with subscribers on the node that answers, with their subscriber counts."""
        answer = await self._call("GET", "/api/channels")
        return {c["channel"]: c["subscribers"] for c in answer.get("channels", [])}

    async def disconnect(self, user: str, reason: str | None = None) -> None:
        """Close every connection of ``user`` on every node, with a final code (4502)."""
        body: dict[str, Any] = {"user": user}
        if reason is not None:
            body["reason"] = reason
        await self._call("POST", "/api/disconnect", body)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return await request_json(self._session, method, self.url + path, body,
                                  bearer=self._key, timeout=self._timeout)
