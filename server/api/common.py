"""Helpers shared by the JSON HTTP routes: bodies, errors, bearer tokens.

Every route handler is wrapped in :func:`json_handler`, so a handler only
returns its success response and raises :class:`~server.errors.StagewireError`
for everything else. The client then gets::

    {"error": {"code": <ErrorCode>, "message": "...", "fields"?: {"name": "..."}}}

with the HTTP status of :func:`http_status`, and never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.errors import CommandError, ErrorCode, ProtocolError, StagewireError
from server.validation import field_errors

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.UNKNOWN_CHANNEL: 404,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.METHOD_NOT_FOUND: 404,
    ErrorCode.ALREADY_SUBSCRIBED: 409,
    ErrorCode.LIMIT_EXCEEDED: 413,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.NOT_SUBSCRIBED: 409,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.NOT_FOUND: 404,
}


def http_status(error: StagewireError) -> int:
    """The HTTP status for ``error``.

    ``BAD_REQUEST`` is 400 when the body could not be read at all, and 422
    when it was read but some fields are invalid (the error has ``fields``).
    """
    if error.code == ErrorCode.BAD_REQUEST and error.fields:
        return 422
    return _STATUS.get(error.code, 500)


def json_response(data: Any, *, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """``data`` encoded with orjson as an ``application/json`` response."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


def json_error(status: int, error: StagewireError, *,
               headers: Mapping[str, str] | None = None) -> web.Response:
    """The ``{"error": {...}}`` response for ``error``.

    An error with a ``retry_after`` attribute (seconds) also sets ``Retry-After``.
    """
    all_headers = dict(headers or {})
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, int(retry_after)))
    return json_response({"error": error.to_dict()}, status=status, headers=all_headers)


def json_handler(handler: Handler) -> Handler:
    """Wrap a route handler so that errors become JSON error responses.

    A ``StagewireError`` becomes :func:`json_error` with :func:`http_status`;
    aiohttp's own ``HTTPException`` passes through; anything else is logged
    and answered with a bare ``INTERNAL`` error.
    """

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StagewireError as exc:
            return json_error(http_status(exc), exc)
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return json_error(500, CommandError(ErrorCode.INTERNAL, "internal error"))

    return wrapper


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body, validated as ``model``.

    Raises:
        ProtocolError: ``BAD_REQUEST`` without fields (400) if the body is not a
            JSON object, with one message per invalid field (422) if it does
            not fit ``model``.
        CommandError: ``LIMIT_EXCEEDED`` (413) if the body is over the app's
            ``client_max_size``.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise CommandError(ErrorCode.LIMIT_EXCEEDED, "request body too large") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError("invalid fields", fields=field_errors(exc)) from None


def bearer_token(request: web.Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        CommandError: ``UNAUTHORIZED`` if the header is missing or not Bearer.
    """
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CommandError(ErrorCode.UNAUTHORIZED, "missing bearer token")
    return token


def client_ip(request: web.Request) -> str | None:
    """The peer's IP address.

    Behind a reverse proxy this is the proxy, unless the app is set up to
    trust its forwarding headers (e.g. with ``aiohttp-remotes``).
    """
    return request.remote
