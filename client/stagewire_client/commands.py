"""The typed commands of the protocol, on top of one ``_request`` primitive.

:class:`Commands` is the part of :class:`~stagewire_client.client.Client` that
turns commands and their results into Python values; it knows nothing about
connections. Application handlers are reached with :meth:`Commands.call`.
"""

from __future__ import annotations

from typing import Any, Mapping

from stagewire_client import protocol
from stagewire_client.protocol import History, Position, PresenceStats


class Commands:
    """Commands of the Stagewire protocol; subclasses provide :meth:`_request`."""

    async def _request(self, type_: str, params: Mapping[str, Any] | None = None, *,
                       timeout: float | None = None) -> Any:
        """Send a command and return its result (raising its error)."""
        raise NotImplementedError

    async def call(self, type_: str, params: Mapping[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """Send any command (an application handler too) and return its result.

        While the client is reconnecting the command waits for the new
        connection, within ``timeout``.

        Raises:
            StagewireError: The server refused it (``code`` says why).
            Disconnected: The connection ended before the reply; the command
                may or may not have run.
            TimeoutError: No reply within ``timeout`` (default ``request_timeout``).
        """
        return await self._request(type_, params, timeout=timeout)

    async def publish(self, channel: str, data: Any, *, idempotency_key: str | None = None) -> Position:
        """Publish ``data`` (JSON-compatible) to ``channel``; returns its position."""
        params: dict[str, Any] = {"channel": channel, "data": data}
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        return protocol.position(await self._request("publish", params))

    async def history(self, channel: str, *, since: Position | None = None, limit: int = 100,
                      reverse: bool = False) -> History:
        """Publications kept for ``channel`` (after ``since``, oldest first unless ``reverse``)."""
        params: dict[str, Any] = {"channel": channel, "limit": limit, "reverse": reverse}
        if since is not None:
            params["since"] = {"offset": since.offset, "epoch": since.epoch}
        return protocol.history(channel, await self._request("history", params))

    async def presence(self, channel: str) -> dict[str, int]:
        """Users present in ``channel``, with their number of connections."""
        result = await self._request("presence", {"channel": channel})
        return {u["user"]: u["connections"] for u in result.get("users", [])}

    async def presence_stats(self, channel: str) -> PresenceStats:
        """How many connections and users are present in ``channel``."""
        result = await self._request("presence_stats", {"channel": channel})
        return PresenceStats(int(result["clients"]), int(result["users"]))

    async def ping(self) -> None:
        """A round trip to the server."""
        await self._request("ping")
