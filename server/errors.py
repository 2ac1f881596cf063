"""Stagewire's error tree and its stable numeric codes.

Every error a client can see is a :class:`StagewireError` carrying an
:class:`ErrorCode`; a client never sees a traceback. Connection-ending
conditions are :class:`CloseCode` values, sent both in the ``disconnect`` push
and as the WebSocket close code.

Exception tree::

    StagewireError                  code: ErrorCode, message, fields; a reply or HTTP error
    ├── ProtocolError               a frame, command or body that cannot be understood
    └── CommandError                a well-formed command that was refused
        ├── BrokerUnavailable       UNAVAILABLE: the broker or presence store cannot serve now
        ├── OffsetConflict          CONFLICT: a compare-and-set publish found the channel behind
        └── TooManyAttempts         TOO_MANY_REQUESTS, with ``retry_after`` (server.auth.limiter)

    Disconnect                      not a reply: ends the connection with a CloseCode

Whoever raises one of these has said everything a caller needs: a handler,
the node or a backend raises it, and the WebSocket and HTTP shells turn it
into the client's ``error`` object, with no translation on the way.

Error codes (replies; the connection stays open)::

    100-199   command errors. ``temporary`` ones (100, 111, 112) may be retried.

Unsubscribe codes (an ``unsubscribe`` push; the connection stays open)::

    2000-2499  final: the server ended the subscription (access lost, ...).
    2500-2999  resubscribe now, with ``recover`` from the last offset seen.

Close codes (the connection ends)::

    1000-2999  WebSocket standard codes; 1001 and 1006 mean "reconnect",
               1009 (message too big) is final.
    4000-4499  reconnect, with backoff (and recovery of subscriptions).
    4500-4999  final: do not reconnect without a change (new credentials, a fix).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Mapping


class ErrorCode(IntEnum):
    """Codes of ``{"error": {"code": ...}}`` replies."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_SUBSCRIBED = 108
    TOKEN_EXPIRED = 109
    CONFLICT = 110
    TOO_MANY_REQUESTS = 111
    UNAVAILABLE = 112
    NOT_FOUND = 113

    @property
    def temporary(self) -> bool:
        """Whether the same command may succeed if retried later."""
        return self in _TEMPORARY


_TEMPORARY = frozenset({ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.UNAVAILABLE})


class UnsubscribeCode(IntEnum):
    """Codes of ``unsubscribe`` pushes: why the server ended one subscription."""

    SERVER = 2000  # ended by the server (access lost, ...); do not resubscribe by yourself
    # 2500-2999: resubscribe with recover.
    RESUBSCRIBE = 2500  # the node could not keep the stream whole: resubscribe and recover

    @property
    def resubscribe(self) -> bool:
        """Whether the client should subscribe again at once, with ``recover``."""
        return 2500 <= self < 3000


class CloseCode(IntEnum):
    """Codes of ``disconnect`` pushes and WebSocket close frames."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    # 4000-4499: reconnect.
    SHUTDOWN = 4000
    SLOW = 4001
    INTERNAL = 4002
    TOKEN_EXPIRED = 4003
    RATE_LIMITED = 4004
    INSUFFICIENT_STATE = 4005
    FORCE_RECONNECT = 4006
    UNAVAILABLE = 4007  # the backend deciding connects (connect proxy) could not answer
    # 4500-4999: final.
    BAD_REQUEST = 4500
    UNAUTHORIZED = 4501
    FORCE_DISCONNECT = 4502
    SESSION_REVOKED = 4503
    CONNECT_TIMEOUT = 4504

    @property
    def reconnect(self) -> bool:
        """Whether a client should reconnect (with backoff) after this code."""
        if self in (CloseCode.GOING_AWAY,):
            return True
        return 4000 <= self < 4500


class StagewireError(Exception):
    """Root of every error Stagewire reports to a client."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = dict(fields) if fields else None

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of a reply."""
        out: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.fields:
            out["fields"] = self.fields
        if self.code.temporary:
            out["temporary"] = True
        return out


class ProtocolError(StagewireError):
    """A frame or command that cannot be decoded or does not have the right shape."""

    def __init__(
        self,
        message: str,
        code: ErrorCode = ErrorCode.BAD_REQUEST,
        fields: Mapping[str, str] | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(code, message, fields)
        self.command_id = command_id


class CommandError(StagewireError):
    """A well-formed command that the server refused."""


class BrokerUnavailable(CommandError):
    """The broker (or the presence store) cannot serve now; the caller may retry later.

    The client is told only that the backend is temporarily unavailable;
    ``detail`` (the backend's own words) is for the logs.
    """

    def __init__(self, detail: str = "", message: str = "broker temporarily unavailable") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)
        self.detail = detail or message

    def __str__(self) -> str:
        return self.detail


class OffsetConflict(CommandError):
    """A compare-and-set publish found the channel behind the expected offset.

    ``current`` is the channel's position (a ``StreamPosition``) as the broker has it.
    """

    def __init__(self, current: Any) -> None:
        super().__init__(ErrorCode.CONFLICT, f"channel is at offset {current.offset}")
        self.current = current


class Disconnect(Exception):
    """Raised inside a connection to end it with a close code."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
