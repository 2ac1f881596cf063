"""JSON over HTTP for the server API and the account routes, with the SDK's errors.

Every error body of the server is ``{"error": {"code", "message", ...}}``: it
becomes a :class:`~stagewire_client.errors.StagewireError`. A server that
cannot be reached, or that answers something else than Stagewire's JSON,
is a :class:`~stagewire_client.errors.CannotConnect`.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import aiohttp

from stagewire_client.errors import CannotConnect, StagewireError


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    bearer: str | None = None,
    timeout: float = 10.0,
) -> Any:
    """Send a JSON request and return the decoded JSON answer.

    Raises:
        StagewireError: The server answered with an error body.
        CannotConnect: Nothing answered at ``url``, or not with Stagewire's JSON.
        TimeoutError: No complete answer within ``timeout`` seconds.
    """
    headers: Mapping[str, str] = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        async with session.request(
            method, url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise CannotConnect(_origin(url), _describe(exc)) from None
    except aiohttp.InvalidURL:
        raise CannotConnect(url, "invalid URL (expected http://host:port)") from None
    except aiohttp.ClientError as exc:
        if isinstance(exc, TimeoutError):
            raise TimeoutError(f"no answer from {_origin(url)} within {timeout:g} s") from None
        raise CannotConnect(_origin(url), str(exc) or type(exc).__name__) from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if status >= 400 and isinstance(data, dict) and isinstance(data.get("error"), dict):
        raise StagewireError.from_dict(data["error"])
    if status >= 400 or data is None:
        raise CannotConnect(_origin(url), f"HTTP {status} from {url} (is this a Stagewire server?)")
    return data


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.partition('/')[0]}"


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "unknown host"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused"
    return str(exc)
