"""JSON errors for the HTTP API: no HTML error pages, never a traceback."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from server.errors import ErrorCode

log = logging.getLogger("stagewire.api")

_STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.LIMIT_EXCEEDED,
    422: ErrorCode.BAD_REQUEST,
    429: ErrorCode.TOO_MANY_REQUESTS,
    503: ErrorCode.UNAVAILABLE,
}


def _error(status: int, code: ErrorCode, message: str, headers=None) -> web.Response:
    return web.json_response({"error": {"code": int(code), "message": message}}, status=status, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, ErrorCode.BAD_REQUEST)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return _error(exc.status, code, exc.reason, headers)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, ErrorCode.INTERNAL, "internal error")
