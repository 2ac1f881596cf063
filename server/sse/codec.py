"""The ``text/event-stream`` codec: pure, no I/O.

:func:`encode_push` is the hub's ``SSE`` encoding. Each push becomes one
event named after its native type (``pub``, ``join``, ``leave``,
``unsubscribe``, ``disconnect``, ``error``) whose ``data`` is the push as JSON
without its ``type``; the node's ping becomes a heartbeat comment
(``: ping``).

A publication's ``id`` is the stream position of *its connection*: every
channel of the stream with its offset and epoch (:func:`encode_id`), so that
``Last-Event-ID`` alone recovers every channel. That line differs per
connection, so a ``pub`` is encoded once as ``POSITION``, the channel,
``POSITION``, the offset, ``POSITION`` and the event without its id; each
connection's writer replaces the header with its own ``id:`` line
(:func:`split_position`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

import orjson

POSITION = b"\x00"
HEARTBEAT = b": ping\n\n"


def event(name: str, data: Any, event_id: str | None = None) -> bytes:
    out = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n"
    if event_id is not None:
        out += b"id: " + event_id.encode() + b"\n"
    return out + b"\n"


def encode_push(message: Mapping[str, Any]) -> bytes:
    kind = message.get("type")
    if kind == "ping":
        return HEARTBEAT
    if not isinstance(kind, str):
        return b""
    body = {k: v for k, v in message.items() if k != "type"}
    if kind == "pub":
        head = POSITION + str(message["channel"]).encode() + POSITION + str(message["offset"]).encode() + POSITION
        return head + b"event: pub\ndata: " + orjson.dumps(body) + b"\n"
    return event(kind, body)


def split_position(payload: bytes) -> tuple[str, int, bytes] | None:
    """``(channel, offset, event without its id and final blank line)`` of an encoded ``pub``."""
    if payload[:1] != POSITION:
        return None
    channel, _, rest = payload[1:].partition(POSITION)
    offset, _, rest = rest.partition(POSITION)
    return channel.decode(), int(offset), rest


def encode_id(positions: Mapping[str, tuple[int, str]]) -> str:
    """The stream position as an event id: base64url of ``[[channel, offset, epoch], ...]``."""
    flat = [[c, o, e] for c, (o, e) in sorted(positions.items())]
    return base64.urlsafe_b64encode(orjson.dumps(flat)).rstrip(b"=").decode()


def decode_id(event_id: str) -> dict[str, tuple[int, str]] | None:
    """The positions of an event id, or None if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4))
        flat = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(flat, list):
        return None
    out: dict[str, tuple[int, str]] = {}
    for item in flat:
        if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str)
                or type(item[1]) is not int or item[1] < 0 or not isinstance(item[2], str)):
            return None
        out[item[0]] = (item[1], item[2])
    return out
