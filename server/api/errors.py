"""HTTP errors: one table between HTTP statuses and error codes, one middleware.

A route handler returns its success response and raises
:class:`~server.errors.StagewireError` for everything else. The middleware
turns that into::

    {"error": {"code": <ErrorCode>, "message": "...", "fields"?: {"name": "..."}}}

with the status from :data:`STATUS_TABLE`. aiohttp's own HTTP errors (404 for
an unknown path, 405, 413) get the same JSON shape under ``/api/``, with the
code from the same table. Anything else is logged and answered with a bare
``INTERNAL`` error: never a traceback, never an HTML error page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from server.errors import CommandError, ErrorCode, StagewireError
from server.ops.logs import self_logged

log = logging.getLogger("stagewire.api")

#: ``(error code, HTTP status)``. A code's status is its first row; an HTTP
#: error's code is the first row with its status. ``BAD_REQUEST`` is 400 when
#: a body could not be read at all and 422 when some fields are invalid.
STATUS_TABLE: tuple[tuple[ErrorCode, int], ...] = (
    (ErrorCode.BAD_REQUEST, 400),
    (ErrorCode.BAD_REQUEST, 422),
    (ErrorCode.UNAUTHORIZED, 401),
    (ErrorCode.TOKEN_EXPIRED, 401),
    (ErrorCode.PERMISSION_DENIED, 403),
    (ErrorCode.NOT_FOUND, 404),
    (ErrorCode.UNKNOWN_CHANNEL, 404),
    (ErrorCode.METHOD_NOT_FOUND, 404),
    (ErrorCode.METHOD_NOT_FOUND, 405),
    (ErrorCode.CONFLICT, 409),
    (ErrorCode.ALREADY_SUBSCRIBED, 409),
    (ErrorCode.NOT_SUBSCRIBED, 409),
    (ErrorCode.LIMIT_EXCEEDED, 413),
    (ErrorCode.TOO_MANY_REQUESTS, 429),
    (ErrorCode.INTERNAL, 500),
    (ErrorCode.UNAVAILABLE, 503),
)

_STATUS_OF: dict[ErrorCode, int] = {}
_CODE_OF: dict[int, ErrorCode] = {}
for _code, _status in STATUS_TABLE:
    _STATUS_OF.setdefault(_code, _status)
    _CODE_OF.setdefault(_status, _code)


def http_status(error: StagewireError) -> int:
    """The HTTP status for ``error``: 422 for invalid fields, else the code's row."""
    if error.code == ErrorCode.BAD_REQUEST and error.fields:
        return 422
    return _STATUS_OF.get(error.code, 500)


def error_code(status: int) -> ErrorCode:
    """The error code of an HTTP error status (``BAD_REQUEST`` for one not in the table)."""
    return _CODE_OF.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST)


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """``data`` encoded with orjson as an ``application/json`` response."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def json_error(error: StagewireError, *, status: int | None = None) -> web.Response:
    """The ``{"error": {...}}`` response for ``error``.

    An error with a ``retry_after`` attribute (seconds) also sets ``Retry-After``.
    """
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(retry_after)))
    return json_response({"error": error.to_dict()}, status=status or http_status(error), headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
def error_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Answer the errors of HTTP handlers as JSON error bodies (``/api/`` ones as coded errors).

    ``/ws`` goes straight to its handler: it answers its own refusals, and a
    frame of this middleware would be kept for the connection's whole life.
    """
    if self_logged(request):
        return handler(request)
    return _answer_errors(request, handler)


async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StagewireError as exc:
        return json_error(exc)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400 or exc.content_type == "application/json":
            raise
        response = json_error(CommandError(error_code(exc.status), exc.reason), status=exc.status)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        if not request.path.startswith("/api/"):
            raise
        log.exception("%s %s failed", request.method, request.path)
        return json_error(CommandError(ErrorCode.INTERNAL, "internal error"))
