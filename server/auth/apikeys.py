"""Server API keys: one of ``[api] keys``, or a key stored with ``stagewire apikey create``.

A stored key is found by its SHA-256 and is valid until revoked. Every
comparison is constant-time, whichever key matches first.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from models.apikey import ApiKey, key_hash
from server.api.common import bearer_token
from server.appkeys import SETTINGS
from server.errors import CommandError, ErrorCode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    """Compare against every configured key in constant time, whatever matches first."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


async def stored_key_matches(presented: str) -> bool:
    """Whether ``presented`` is a database key that has not been revoked."""
    digest = key_hash(presented)
    row = await ApiKey.get_or_none(key_hash=digest, revoked_at__isnull=True)
    # Decided here, exactly and in constant time, not by the database's string
    # comparison (collations may fold case or ignore trailing spaces).
    return row is not None and hmac.compare_digest(row.key_hash, digest)


async def check_api_key(request: web.Request) -> None:
    """Raise ``UNAUTHORIZED`` unless the request carries a configured or stored API key."""
    keys = request.app[SETTINGS].api.keys
    presented = bearer_token(request)
    if key_matches(presented, keys) or await stored_key_matches(presented):
        return
    if not keys and not await ApiKey.filter(revoked_at__isnull=True).exists():
        raise CommandError(ErrorCode.UNAUTHORIZED, "no API keys: set [api] keys or run stagewire apikey create")
    raise CommandError(ErrorCode.UNAUTHORIZED, "invalid API key")


def api_key_required(handler: Handler) -> Handler:
    """Refuse (401) a request without a configured or stored API key."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        await check_api_key(request)
        return await handler(request)

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper
