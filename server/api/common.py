"""Helpers shared by the JSON HTTP routes: bodies and bearer tokens.

A route handler returns its success response (:func:`json_response`) and
raises :class:`~server.errors.StagewireError` for everything else;
:mod:`server.api.errors` answers those, for every route.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.api.errors import json_response
from server.errors import CommandError, ErrorCode, ProtocolError
from server.validation import field_errors

__all__ = ["bearer_token", "client_ip", "json_body", "json_response", "parse_body", "validate"]

M = TypeVar("M", bound=BaseModel)


async def json_body(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` for an empty body if ``empty_ok``).

    Raises:
        ProtocolError: ``BAD_REQUEST`` (400) if the body is not a JSON object.
        CommandError: ``LIMIT_EXCEEDED`` (413) if the body is over the app's
            ``client_max_size``.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise CommandError(ErrorCode.LIMIT_EXCEEDED, "request body too large") from None
    if empty_ok and not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("request body must be a JSON object")
    return data


def validate(model: type[M], data: dict[str, Any], *, strict: bool | None = None) -> M:
    """``data`` validated as ``model``; a ``BAD_REQUEST`` with one message per invalid field (422)."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise ProtocolError("invalid fields", fields=field_errors(exc)) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body, validated as ``model`` (see :func:`json_body`, :func:`validate`)."""
    return validate(model, await json_body(request))


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
