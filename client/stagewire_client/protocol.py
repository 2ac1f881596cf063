"""The client side of the Stagewire wire protocol: a pure codec with no I/O.

Two encodings, chosen by WebSocket subprotocol:

* ``stagewire.json``: text frames holding one or more JSON objects, one per line;
* ``stagewire.msgpack``: binary frames holding one or more msgpack maps, concatenated.

The server coalesces whatever it queued for a connection during one event-loop
tick into one frame, so :func:`decode_frame` always returns a list. Messages
from the server are replies (:class:`Reply`, they carry the command's ``id``)
or pushes (:class:`Push`: ``pub``, ``join``, ``leave``, ``ping``, ``error``,
``disconnect``). Nothing here touches a socket; bad input raises
:class:`~stagewire_client.errors.ProtocolViolation`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import msgpack  # type: ignore[import-untyped]

from stagewire_client.errors import ProtocolViolation, StagewireError


class Encoding(enum.Enum):
    """A wire encoding; its value is the WebSocket subprotocol that selects it."""

    JSON = "stagewire.json"
    MSGPACK = "stagewire.msgpack"

    @classmethod
    def parse(cls, name: str | Encoding) -> Encoding:
        """``"json"``, ``"msgpack"`` or a subprotocol name."""
        if isinstance(name, Encoding):
            return name
        for encoding in cls:
            if name in (encoding.value, encoding.name.lower()):
                return encoding
        raise ValueError(f"unknown encoding {name!r}: json or msgpack")


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: the offset of a publication and the stream's epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One message published to a channel.

    ``info`` is ``{"user": <username>}`` when a client published it, None when
    the server API did.
    """

    channel: str
    offset: int
    data: Any
    info: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class History:
    """The result of a ``history`` command, and the channel's current position."""

    publications: list[Publication]
    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A ``join`` or ``leave`` push: ``info`` holds ``user`` and ``client``."""

    kind: str
    channel: str
    info: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PresenceStats:
    """How many connections and distinct users are present in a channel."""

    clients: int
    users: int


@dataclass(frozen=True, slots=True)
class ConnectInfo:
    """The result of ``connect``: who we are and the server's heartbeat."""

    client: str
    user: Mapping[str, Any]
    ping: float
    expires_in: int
    node: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a command: ``result``, or ``error`` when it failed."""

    id: int
    result: Any = None
    error: StagewireError | None = None


@dataclass(frozen=True, slots=True)
class Push:
    """A message the server sent unasked; ``body`` is the whole message."""

    type: str
    body: Mapping[str, Any] = field(default_factory=dict)


# -- URLs -----------------------------------------------------------------------


def websocket_url(url: str) -> str:
    """The WebSocket URL of a server: ``http://h:8080`` → ``ws://h:8080/ws``.

    A ``ws://`` or ``wss://`` URL is kept as it is; an ``http(s)://`` one gets
    the matching scheme, and ``/ws`` when it has no path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    if "/" not in rest:
        rest += "/ws"
    return f"{scheme}://{rest}"


def http_url(url: str) -> str:
    """The HTTP base URL of a server: ``ws://h:8080/ws`` → ``http://h:8080``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme)
    host, _, path = rest.partition("/")
    path = path.rstrip("/")
    if path == "ws" or path.endswith("/ws"):
        path = path[:-2].rstrip("/")
    return f"{scheme}://{host}" + (f"/{path}" if path else "")


# -- encoding -----------------------------------------------------------------


def command(command_id: int, type_: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A command message; ``params`` sit beside ``id`` and ``type``."""
    message = dict(params or {})
    message["id"] = command_id
    message["type"] = type_
    return message


def encode(messages: Sequence[Mapping[str, Any]], encoding: Encoding) -> str | bytes:
    """One frame holding ``messages``: text for JSON, bytes for msgpack."""
    if encoding is Encoding.JSON:
        return "\n".join(json.dumps(m, separators=(",", ":"), ensure_ascii=False) for m in messages)
    return b"".join(msgpack.packb(m, use_bin_type=True) for m in messages)


# -- decoding -----------------------------------------------------------------


def decode_frame(frame: str | bytes, encoding: Encoding) -> list[Any]:
    """Split one frame into its messages."""
    if encoding is Encoding.JSON:
        if not isinstance(frame, str):
            raise ProtocolViolation("binary frame on a stagewire.json connection")
        try:
            return [json.loads(line) for line in frame.split("\n") if line.strip()]
        except ValueError:
            raise ProtocolViolation("malformed JSON from the server") from None
    if not isinstance(frame, bytes):
        raise ProtocolViolation("text frame on a stagewire.msgpack connection")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    messages, end = [], 0
    try:
        for message in unpacker:
            messages.append(message)
            end = unpacker.tell()
    except Exception:  # msgpack raises several unrelated types for bad input
        raise ProtocolViolation("malformed msgpack from the server") from None
    # After the last whole message, not tell() at the end: it also counts the
    # bytes of an incomplete trailing one.
    if end != len(frame):
        raise ProtocolViolation("truncated msgpack from the server")
    return messages


def parse_message(message: Any) -> Reply | Push:
    """Classify one decoded message as a :class:`Reply` or a :class:`Push`."""
    if not isinstance(message, dict):
        raise ProtocolViolation(f"a message must be an object, got {type(message).__name__}")
    command_id = message.get("id")
    if command_id is not None:
        if type(command_id) is not int:
            raise ProtocolViolation("reply id must be an integer")
        if "error" in message:
            return Reply(command_id, error=StagewireError.from_dict(message["error"]))
        return Reply(command_id, result=message.get("result"))
    push_type = message.get("type")
    if not isinstance(push_type, str):
        raise ProtocolViolation("a push needs a type")
    return Push(push_type, message)


def publication(channel: str, body: Mapping[str, Any]) -> Publication:
    """A :class:`Publication` from a ``pub`` push or a history/recovery entry."""
    offset = body.get("offset")
    if type(offset) is not int:
        raise ProtocolViolation("publication without an integer offset")
    return Publication(channel, offset, body.get("data"), body.get("info"))


def position(result: Mapping[str, Any]) -> Position:
    """The ``{offset, epoch}`` of a subscribe, publish or history result."""
    offset, epoch = result.get("offset"), result.get("epoch")
    if type(offset) is not int or not isinstance(epoch, str):
        raise ProtocolViolation("result without offset and epoch")
    return Position(offset, epoch)


def connect_info(result: Any) -> ConnectInfo:
    """The :class:`ConnectInfo` of a ``connect`` result."""
    if not isinstance(result, dict):
        raise ProtocolViolation("connect result must be an object")
    try:
        return ConnectInfo(
            client=str(result["client"]),
            user=dict(result.get("user") or {}),
            ping=float(result["ping"]),
            expires_in=int(result.get("expires_in") or 0),
            node=str(result.get("node", "")),
        )
    except (KeyError, TypeError, ValueError):
        raise ProtocolViolation("malformed connect result") from None


def history(channel: str, result: Mapping[str, Any]) -> History:
    """The :class:`History` of a ``history`` result."""
    top = position(result)
    pubs = [publication(channel, p) for p in result.get("publications") or []]
    return History(pubs, top.offset, top.epoch)
