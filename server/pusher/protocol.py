"""The Pusher Channels wire protocol (v7): a pure codec with no I/O.

Every WebSocket message is one JSON object, ``{"event", "channel"?, "data"?}``.
Server events carry ``data`` as a JSON *string* (the SDKs decode it), except
``pusher:error`` and ``pusher:subscription_error``, whose ``data`` is an
object, as Pusher sends them.

:func:`encode_push` is the hub's ``PUSHER`` encoding: it turns the node's
pushes (``pub``, ``join``, ``leave``) into Pusher events once per fan-out,
whatever the number of Pusher subscribers:

* a publication becomes the event named by its ``info.event`` (``message``
  when it has none, e.g. from a native client), on the Pusher channel (the
  Stagewire name without its namespace); ``info.user_id`` becomes the
  event's ``user_id`` (client events on presence channels);
* ``join``/``leave`` on a ``presence-`` channel become
  ``pusher_internal:member_added``/``member_removed``; elsewhere nothing;
* ``info.socket_id`` excludes one connection: the bytes then start with
  ``EXCLUDE``, the socket id and ``EXCLUDE`` again, and each connection's
  writer drops the message if the id is its own (:func:`split_exclusion`);
* anything else (pings, native disconnects) encodes to ``b""``: nothing is sent.

Publication data: a Pusher event's data string that holds a JSON object or
array is kept as that value (native subscribers see the object); any other
string is kept as it is. Towards Pusher clients a string goes out verbatim
and anything else as its JSON text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from server.errors import ErrorCode, StagewireError

PROTOCOL_VERSIONS = (5, 6, 7)
MAX_NAME = 200
CHANNEL_NAME_RE = re.compile(r"\A[-a-zA-Z0-9_=@,.;]+\Z")
USER_CHANNEL_PREFIX = "#server-to-user-"
SOCKET_ID_RE = re.compile(r"\A\d+\.\d+\Z")
DEFAULT_EVENT = "message"
EXCLUDE = b"\x00"

# Close codes (Pusher's ranges: 4000-4099 do not reconnect, 4100-4199 back
# off, 4200-4299 reconnect at once) and pusher:error codes that do not close.
APP_NOT_FOUND = 4001
APP_DISABLED = 4003
OVER_QUOTA = 4004
UNSUPPORTED_PROTOCOL = 4007
NO_PROTOCOL = 4008
UNAUTHORIZED = 4009
OVER_CAPACITY = 4100
RECONNECT = 4200
BAD_EVENT = 4300  # an event that cannot be understood
RATE_LIMITED = 4301  # a client event over the connection's rate
NOT_ALLOWED = 4302  # a client event that may not be sent (not subscribed, not private, disabled)
TOO_LARGE = 4303  # a client event over max_event_size

# The node's close codes (server.errors.CloseCode) → Pusher's.
_CLOSE_CODES = {
    4000: RECONNECT,  # shutdown: reconnect (elsewhere) at once
    4001: OVER_CAPACITY,  # slow: back off
    4002: RECONNECT,  # internal error
    4004: OVER_CAPACITY,  # flooding: back off
    4005: RECONNECT,  # publications may have been missed: resubscribe
    4006: RECONNECT,  # force reconnect
    4500: BAD_EVENT,
    4501: UNAUTHORIZED,  # a failed sign-in
    4502: UNAUTHORIZED,  # terminate_connections, POST /api/disconnect
    4503: UNAUTHORIZED,
}


def close_code(code: int) -> int:
    """The Pusher close code for one of the node's close codes (others pass unchanged)."""
    return _CLOSE_CODES.get(code, code)


class PusherError(StagewireError):
    """A refusal in Pusher's terms: ``pusher_code`` goes in ``pusher:error`` (None: no code)."""

    def __init__(self, message: str, pusher_code: int | None = BAD_EVENT,
                 code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(code, message)
        self.pusher_code = pusher_code


class SubscriptionError(PusherError):
    """A refused subscription, sent as ``pusher:subscription_error`` ``{type, error, status}``."""

    def __init__(self, kind: str, message: str, status: int) -> None:
        super().__init__(message, None)
        self.kind = kind
        self.status = status


def auth_error(message: str = "invalid signature") -> SubscriptionError:
    return SubscriptionError("AuthError", message, 401)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """One decoded client message."""

    event: str
    channel: str | None
    data: Any


# -- names --------------------------------------------------------------------------


def valid_channel(name: Any) -> bool:
    """Pusher's channel names: up to 200 of ``A-Z a-z 0-9 _ - = @ , . ;`` (or a user channel)."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        return False
    if name.startswith(USER_CHANNEL_PREFIX):
        return CHANNEL_NAME_RE.match(name[len(USER_CHANNEL_PREFIX):]) is not None
    return CHANNEL_NAME_RE.match(name) is not None


def valid_user_id(user_id: Any) -> bool:
    return isinstance(user_id, str) and 0 < len(user_id) <= MAX_NAME and CHANNEL_NAME_RE.match(user_id) is not None


def is_presence(name: str) -> bool:
    return name.startswith("presence-")


def is_encrypted(name: str) -> bool:
    return name.startswith("private-encrypted-")


def is_private(name: str) -> bool:
    """Channels that need a signature: private-, private-encrypted- and presence-."""
    return name.startswith("private-") or name.startswith("presence-")


def is_cache(name: str) -> bool:
    return name.startswith(("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"))


def user_of_channel(name: str) -> str | None:
    """The user id of ``#server-to-user-<id>``, None for other channels."""
    return name[len(USER_CHANNEL_PREFIX):] if name.startswith(USER_CHANNEL_PREFIX) else None


def pusher_name(stagewire_channel: str) -> str:
    """``"ns:name"`` → ``"name"``."""
    return stagewire_channel.partition(":")[2]


# -- decoding ------------------------------------------------------------------------


def decode(frame: str | bytes) -> ClientEvent:
    """One client message. Raises :class:`PusherError` for anything else."""
    if isinstance(frame, bytes):
        raise PusherError("binary messages are not part of the Pusher protocol")
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise PusherError("malformed JSON") from None
    if not isinstance(message, dict):
        raise PusherError("a message must be a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        raise PusherError("event: a string is required")
    channel = message.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise PusherError("channel: a string is required")
    data = message.get("data")
    if isinstance(data, str) and event.startswith("pusher:") and data.startswith("{"):
        # Some SDKs send the data of pusher:* events as a JSON string.
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise PusherError("data: malformed JSON") from None
    return ClientEvent(event, channel, data)


def data_from_pusher(text: str) -> Any:
    """A Pusher event's data as a publication's data (see the module docstring)."""
    if text[:1] in ("{", "["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        return value
    return text


def data_to_pusher(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# -- server events -------------------------------------------------------------------


def event(name: str, data: Any = None, channel: str | None = None) -> dict[str, Any]:
    """A server event; ``data`` that is not a string is sent as its JSON text."""
    out: dict[str, Any] = {"event": name}
    if channel is not None:
        out["channel"] = channel
    if data is not None:
        out["data"] = data_to_pusher(data)
    return out


def connection_established(socket_id: str, activity_timeout: int) -> dict[str, Any]:
    return event("pusher:connection_established", {"socket_id": socket_id, "activity_timeout": activity_timeout})


def error(code: int | None, message: str) -> dict[str, Any]:
    return {"event": "pusher:error", "data": {"code": code, "message": message}}


def pong() -> dict[str, Any]:
    return event("pusher:pong", {})


def subscription_succeeded(channel: str, data: Any = None) -> dict[str, Any]:
    return event("pusher_internal:subscription_succeeded", {} if data is None else data, channel)


def subscription_error(channel: str, exc: SubscriptionError) -> dict[str, Any]:
    return {"event": "pusher:subscription_error", "channel": channel,
            "data": {"type": exc.kind, "error": exc.message, "status": exc.status}}


def presence_data(members: Mapping[str, str | None]) -> str:
    """The ``presence`` object of a presence channel's subscription_succeeded, as JSON text.

    ``members`` maps user ids to their info as JSON text (embedded as it is).
    """
    ids = sorted(members)
    hash_ = ",".join(f"{_json(uid)}:{members[uid] or 'null'}" for uid in ids)
    return f'{{"presence":{{"ids":{_json(ids)},"hash":{{{hash_}}},"count":{len(ids)}}}}}'


def signin_success(user_data: str) -> dict[str, Any]:
    return event("pusher:signin_success", {"user_data": user_data})


def cache_miss(channel: str) -> dict[str, Any]:
    return {"event": "pusher:cache_miss", "channel": channel}


# -- the hub's PUSHER encoding ---------------------------------------------------------


def encode_push(message: Mapping[str, Any]) -> bytes:
    """One message for Pusher connections (see the module docstring)."""
    if "event" in message:
        return orjson.dumps(message)
    kind = message.get("type")
    if kind == "pub":
        return _publication(message)
    if kind == "join" or kind == "leave":
        return _member(kind, message)
    return b""


def split_exclusion(payload: bytes) -> tuple[bytes | None, bytes]:
    """``(excluded socket id or None, the event's bytes)``."""
    if payload[:1] != EXCLUDE:
        return None, payload
    socket_id, _, rest = payload[1:].partition(EXCLUDE)
    return socket_id, rest


def _publication(message: Mapping[str, Any]) -> bytes:
    info = message.get("info") or {}
    name = info.get("event")
    out: dict[str, Any] = {
        "event": name if isinstance(name, str) else DEFAULT_EVENT,
        "channel": pusher_name(message["channel"]),
        "data": data_to_pusher(message["data"]),
    }
    user_id = info.get("user_id")
    if isinstance(user_id, str):
        out["user_id"] = user_id
    return _excluding(info.get("socket_id"), orjson.dumps(out))


def _member(kind: str, message: Mapping[str, Any]) -> bytes:
    channel = pusher_name(message["channel"])
    if not is_presence(channel):
        return b""
    info = message.get("info") or {}
    user = info.get("user")
    if not isinstance(user, str):
        return b""
    if kind == "join":
        user_info = info.get("user_info")
        extra = f',"user_info":{user_info}' if isinstance(user_info, str) else ""
        data = f'{{"user_id":{_json(user)}{extra}}}'
        name = "pusher_internal:member_added"
    else:
        data = f'{{"user_id":{_json(user)}}}'
        name = "pusher_internal:member_removed"
    payload = orjson.dumps({"event": name, "channel": channel, "data": data})
    return _excluding(info.get("socket_id"), payload)


def _excluding(socket_id: Any, payload: bytes) -> bytes:
    if isinstance(socket_id, str) and socket_id:
        return EXCLUDE + socket_id.encode() + EXCLUDE + payload
    return payload


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
