"""Logging: one JSON object per line, tagged with the connection and request ids.

``stagewire serve`` calls :func:`configure_logging` with ``[server] log_format``
(``json`` by default, ``text`` for people at a terminal). Two context variables
tag every record logged while they are set:

* ``conn``: the WebSocket connection id, set by the ``/ws`` handler for the
  whole life of its task (so every line a command or handler logs carries it);
* ``request``: the HTTP request id (``X-Request-Id`` in the response), or
  ``<conn>/<command id>`` while a WebSocket command runs.

Other fields come from ``extra=``: ``log.info("login", extra={"user": name})``.

Per-connection lines ("connected" and "connection closed", for the native and
the Pusher protocol) go to the logger ``stagewire.connections`` at INFO, which
is off unless ``[server] connection_log = true``: in a reconnect storm,
formatting and writing them was about a seventh of the server's CPU time per
connect (docs/benchmarks.md). Refused connects are always logged, on
``stagewire.websocket``.
Nothing logs a token, a password or an ``Authorization`` header: the HTTP
line has the path without its query string, the status and the duration.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import sys
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

conn_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stagewire_conn", default=None)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stagewire_request", default=None)

http_log = logging.getLogger("stagewire.http")
#: One line per connection opened and closed; at INFO only with ``[server] connection_log``.
connection_log = logging.getLogger("stagewire.connections")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Copies the context's connection and request ids onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "conn"):
            record.conn = conn_id.get()
        if not hasattr(record, "request"):
            record.request = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "conn"?, "request"?, extras..., "exc"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with ``[conn request]`` when they are set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(str(v) for v in (getattr(record, "conn", None), getattr(record, "request", None)) if v)
        record.ids = f" [{ids}]" if ids else ""
        return super().format(record)


class BadRequestFilter(logging.Filter):
    """A malformed HTTP request is the client's fault: one INFO line, not an ERROR with a traceback.

    aiohttp answers it with 400 and logs the parser's exception; left alone, a
    client could fill the log with tracebacks by sending garbage.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "bad HTTP request refused: %s", (str(exc.message).strip(),)
            record.exc_info = record.exc_text = None
        return True


def configure_logging(log_format: str = "json", level: int = logging.INFO, *, connections: bool = False) -> None:
    """Send every record to stderr, one line each, in ``log_format`` (json or text).

    ``connections`` turns on the per-connection lines of :data:`connection_log`.
    """
    if log_format not in ("json", "text"):
        raise ValueError(f"log_format must be json or text, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(BadRequestFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    connection_log.setLevel(logging.NOTSET if connections else logging.WARNING)


def new_request_id() -> str:
    return secrets.token_hex(6)


#: Paths whose handler logs its own line: a WebSocket is a connection, not a request.
SELF_LOGGED = frozenset({"/ws"})


def self_logged(request: web.Request) -> bool:
    """Whether ``request`` is for a path of :data:`SELF_LOGGED`.

    Read from the URL's path as routing left it (``path_safe``), not from
    ``request.path``: each request property read is kept in the request's
    cache, and a WebSocket's request lives as long as the connection.
    """
    return request.rel_url.path_safe in SELF_LOGGED


@web.middleware
def request_log_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Awaitable[web.StreamResponse]:
    """Give each HTTP request an id (``X-Request-Id``) and log one line when it is answered.

    ``/ws`` goes straight to its handler, which does both (see
    :func:`log_request`): this middleware's frame would otherwise be kept
    for the whole life of every WebSocket connection.
    """
    if self_logged(request):
        return handler(request)
    return _logged(request, handler)


def log_request(request: web.Request, status: int, started: float) -> None:
    """The line of one answered request (``GET /ws 403``)."""
    # Probes and scrapes come every few seconds: keep them out of the INFO stream.
    level = logging.DEBUG if request.path in _QUIET_PATHS and status < 400 else logging.INFO
    http_log.log(
        level, "%s %s %d", request.method, request.path, status,
        extra={"status": status, "ms": round((time.perf_counter() - started) * 1000, 2),
               "remote": request.remote},
    )


async def _logged(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    rid = new_request_id()
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        log_request(request, status, started)
        request_id.reset(token)
