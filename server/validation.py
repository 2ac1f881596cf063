"""Turning pydantic validation errors into Stagewire's per-field messages.

Shared by WebSocket commands (``server.dispatch``) and the HTTP API
(``server.api.common``), so a client sees the same messages on both.
"""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError) -> dict[str, str]:
    """One message per field (dotted path) from a pydantic error; the first one wins."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "value_error" and "error" in error.get("ctx", {}):
            # Our own validators' messages, without pydantic's "Value error, ".
            message = str(error["ctx"]["error"])
        else:
            message = error["msg"]
        fields.setdefault(name, message)
    return fields
