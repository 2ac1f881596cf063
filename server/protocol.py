"""The Stagewire wire protocol: a pure codec with no I/O.

Two encodings share one message model:

* ``stagewire.json``: text frames; a frame holds one or more JSON objects,
  one per line (separated by ``\\n``).
* ``stagewire.msgpack``: binary frames; a frame holds one or more msgpack maps,
  concatenated.

Two more encodings belong to the other protocol shells over the same hub, so
that fan-out still encodes each push once per encoding: ``PUSHER`` (the
Pusher Channels envelope, :mod:`server.pusher.protocol`) and ``SSE``
(``text/event-stream`` events, :mod:`server.sse.codec`). They are never
negotiated on ``/ws``.

Client → server messages are *commands*: ``{"id": <int>, "type": "<name>", ...}``.
Server → client messages are *replies* (``{"id", "result"}`` or
``{"id", "error"}``) and *pushes*, which carry ``type`` but no ``id``.

This module never imports aiohttp: it turns bytes into commands and messages
into bytes, and raises :class:`~server.errors.ProtocolError` on bad input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping

import msgpack
import orjson

from server.errors import ErrorCode, ProtocolError, StagewireError, UnsubscribeCode
from server.pusher import protocol as pusher_protocol
from server.sse import codec as sse_codec

MAX_COMMANDS_PER_FRAME = 100


class Encoding(enum.Enum):
    JSON = "stagewire.json"
    MSGPACK = "stagewire.msgpack"
    PUSHER = "pusher"  # the /app/{key} shell: one Pusher event per frame
    SSE = "sse"  # the /sse shell: text/event-stream

    @property
    def binary(self) -> bool:
        return self is Encoding.MSGPACK


SUBPROTOCOLS: tuple[str, ...] = (Encoding.JSON.value, Encoding.MSGPACK.value)


def encoding_for(subprotocol: str | None) -> Encoding:
    """The encoding a negotiated subprotocol selects; JSON when none was named."""
    if subprotocol == Encoding.MSGPACK.value:
        return Encoding.MSGPACK
    return Encoding.JSON


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded client command. ``params`` holds every field but ``id`` and ``type``."""

    id: int
    type: str
    params: dict[str, Any]


# -- decoding -----------------------------------------------------------------


def decode_frame(data: str | bytes, encoding: Encoding) -> list[Any]:
    """Split one frame into its messages (not yet validated as commands)."""
    if encoding is Encoding.JSON:
        if isinstance(data, bytes):
            raise ProtocolError("binary frame on a stagewire.json connection")
        messages = []
        for line in data.split("\n"):
            if not line.strip():
                continue
            try:
                messages.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise ProtocolError("malformed JSON") from None
            if len(messages) > MAX_COMMANDS_PER_FRAME:
                raise ProtocolError(f"more than {MAX_COMMANDS_PER_FRAME} commands in one frame")
        if not messages:
            raise ProtocolError("empty frame")
        return messages
    if isinstance(data, str):
        raise ProtocolError("text frame on a stagewire.msgpack connection")
    unpacker = msgpack.Unpacker(
        # Non-string map keys decode (publish data is then refused with a field
        # error by check_json_compatible, which is clearer than "malformed").
        raw=False, strict_map_key=False, max_buffer_size=len(data) or 1
    )
    end = 0
    try:
        unpacker.feed(data)
        messages = []
        for message in unpacker:
            messages.append(message)
            # After a whole message, not after the loop: a cut-off message
            # that opened a container counts its header as read.
            end = unpacker.tell()
            if len(messages) > MAX_COMMANDS_PER_FRAME:
                raise ProtocolError(f"more than {MAX_COMMANDS_PER_FRAME} commands in one frame")
    except ProtocolError:
        raise
    except Exception:  # msgpack raises several unrelated types for bad input
        raise ProtocolError("malformed msgpack") from None
    if end != len(data):
        raise ProtocolError("truncated msgpack")
    if not messages:
        raise ProtocolError("empty frame")
    return messages


def parse_command(message: Any) -> Command:
    """Validate a command's envelope: a map with a positive integer ``id`` and a ``type``."""
    if not isinstance(message, dict):
        raise ProtocolError("a command must be an object")
    command_id = message.get("id")
    if type(command_id) is not int or command_id <= 0 or command_id >= 2**53:
        raise ProtocolError("id: a positive integer is required", fields={"id": "required positive integer"})
    command_type = message.get("type")
    if not isinstance(command_type, str) or not command_type:
        raise ProtocolError(
            "type: a string is required", fields={"type": "required string"}, command_id=command_id
        )
    params = {k: v for k, v in message.items() if k != "id" and k != "type"}
    return Command(command_id, command_type, params)


def check_json_compatible(value: Any) -> None:
    """Publication data must be representable in JSON, so every subscriber can read it."""
    try:
        orjson.dumps(value)
    except TypeError:
        raise ProtocolError(
            "data must be JSON-compatible (no binary, map keys must be strings)",
            fields={"data": "not JSON-compatible"},
        ) from None


# -- encoding -----------------------------------------------------------------


def encode(message: Mapping[str, Any], encoding: Encoding) -> bytes:
    """Encode one server message."""
    if encoding is Encoding.JSON:
        return orjson.dumps(message)
    if encoding is Encoding.MSGPACK:
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed
    if encoding is Encoding.PUSHER:
        return pusher_protocol.encode_push(message)
    return sse_codec.encode_push(message)


def join_messages(payloads: list[bytes], encoding: Encoding) -> bytes:
    """Join encoded messages into one frame payload."""
    if len(payloads) == 1:
        return payloads[0]
    if encoding is Encoding.JSON:
        return b"\n".join(payloads)
    return b"".join(payloads)


def reply(command_id: int, result: Any) -> dict[str, Any]:
    return {"id": command_id, "result": {} if result is None else result}


def error_reply(command_id: int | None, error: StagewireError) -> dict[str, Any]:
    """An error reply, or an ``error`` push when the command's id is unknown."""
    if command_id is None:
        return {"type": "error", "error": error.to_dict()}
    return {"id": command_id, "error": error.to_dict()}


def pub_push(
    channel: str, offset: int, data: Any, info: Mapping[str, Any] | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "pub", "channel": channel, "offset": offset, "data": data}
    if info is not None:
        message["info"] = info
    return message


def presence_push(kind: str, channel: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """A ``join`` or ``leave`` push."""
    return {"type": kind, "channel": channel, "info": info}


def unsubscribe_push(channel: str, reason: str, code: UnsubscribeCode = UnsubscribeCode.SERVER) -> dict[str, Any]:
    """The server ended a subscription: for good (2000-2499, e.g. access lost) or to resubscribe (2500-2999)."""
    return {"type": "unsubscribe", "channel": channel, "code": int(code), "reason": reason}


def disconnect_push(code: int, reason: str, reconnect: bool,
                    reconnect_after: tuple[int, int] | None = None) -> dict[str, Any]:
    """The last message before the server closes; ``reconnect_after`` is ``[min_ms, max_ms]``.

    With ``reconnect_after``, a client that reconnects waits a random time in
    that range first (a draining node spreads its clients out in time).
    """
    push: dict[str, Any] = {"type": "disconnect", "code": code, "reason": reason, "reconnect": reconnect}
    if reconnect_after is not None:
        push["reconnect_after"] = list(reconnect_after)
    return push


PING_PUSH = {"type": "ping"}


def internal_error() -> StagewireError:
    return StagewireError(ErrorCode.INTERNAL, "internal error")
