"""Getting tokens over HTTP: ``login`` and ``refresh_token``.

Both fit as a :class:`~stagewire_client.client.Client` token provider::

    client = Client(url, token=lambda: login_token(url, "alice", password))

Passwords and tokens travel only in request bodies and the ``Authorization``
header, never in a URL, and are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp

from stagewire_client import protocol
from stagewire_client._http import request_json


@dataclass(frozen=True, slots=True)
class Login:
    """A token, how long it lives (seconds) and whose it is (``{id, username, role}``)."""

    token: str
    expires_in: int
    user: Mapping[str, Any]

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"Login(user={self.user.get('username')!r}, expires_in={self.expires_in})"


async def login(url: str, username: str, password: str, *, timeout: float = 10.0) -> Login:
    """Log in with ``POST /api/auth/login``.

    Raises:
        StagewireError: 101 for a wrong name or password, 111 after too many failures.
        CannotConnect: The server cannot be reached.
    """
    body = {"username": username, "password": password}
    return await _token_call(url, "/api/auth/login", body, None, timeout)


async def login_token(url: str, username: str, password: str) -> str:
    """Just the token of :func:`login`."""
    return (await login(url, username, password)).token


async def refresh_token(url: str, token: str, *, timeout: float = 10.0) -> Login:
    """A new token for the session of ``token``, with ``POST /api/auth/refresh``."""
    return await _token_call(url, "/api/auth/refresh", {}, token, timeout)


async def _token_call(url: str, path: str, body: Any, bearer: str | None, timeout: float) -> Login:
    async with aiohttp.ClientSession() as session:
        answer = await request_json(session, "POST", protocol.http_url(url).rstrip("/") + path, body,
                                    bearer=bearer, timeout=timeout)
    return Login(str(answer["token"]), int(answer.get("expires_in", 0)), answer.get("user") or {})
