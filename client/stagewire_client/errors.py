"""Errors raised by the Stagewire client, and the protocol's codes.

Exception tree::

    ClientError                 root of everything this package raises
    ├── StagewireError          the server refused a command: code, message, fields, temporary
    ├── Disconnected            the connection ended: code, reason, reconnect
    ├── CannotConnect           the server could not be reached: wrong URL, refused, not Stagewire
    └── ProtocolViolation       the server sent something that is not the Stagewire protocol

A call that times out raises the built-in :class:`TimeoutError`.

The codes mirror ``docs/protocol.md``: :class:`ErrorCode` for error replies
(the connection stays open) and :class:`CloseCode` for the end of a
connection, where 1001, 1006 and 4000-4499 mean "reconnect" and 4500-4999,
1000 and 1009 are final.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Mapping


class ErrorCode(IntEnum):
    """Codes of error replies (``{"id": 1, "error": {"code": ...}}``)."""

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


class UnsubscribeCode(IntEnum):
    """Codes of ``unsubscribe`` pushes: 2000-2499 final, 2500-2999 resubscribe with recover."""

    SERVER = 2000  # the server ended the subscription (access lost, ...)
    RESUBSCRIBE = 2500  # the server could not keep the stream whole: resubscribe and recover


def should_resubscribe(code: int) -> bool:
    """Whether an ``unsubscribe`` push with ``code`` asks for an immediate resubscribe with recover."""
    return 2500 <= code < 3000


class CloseCode(IntEnum):
    """Codes of ``disconnect`` pushes and WebSocket close frames."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006  # never sent: the connection was lost without a close frame
    MESSAGE_TOO_BIG = 1009
    SHUTDOWN = 4000
    SLOW = 4001
    INTERNAL = 4002
    TOKEN_EXPIRED = 4003
    RATE_LIMITED = 4004
    INSUFFICIENT_STATE = 4005
    FORCE_RECONNECT = 4006
    UNAVAILABLE = 4007  # the backend deciding connects (connect proxy) did not answer
    BAD_REQUEST = 4500
    UNAUTHORIZED = 4501
    FORCE_DISCONNECT = 4502
    SESSION_REVOKED = 4503
    CONNECT_TIMEOUT = 4504


# 1011-1014 are not in the protocol's table, but they are the standard ways a
# server or a proxy says "an error on my side, try again".
_RECONNECT_STANDARD = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def should_reconnect(code: int) -> bool:
    """Whether a connection closed with ``code`` should be reopened (with backoff)."""
    return code in _RECONNECT_STANDARD or 4000 <= code < 4500


class ClientError(Exception):
    """Root of every error raised by :mod:`stagewire_client`."""


class StagewireError(ClientError):
    """An error reply from the server (WebSocket command or HTTP API).

    Attributes:
        code: An :class:`ErrorCode` when the code is known, else the plain int.
        message: The server's message.
        fields: One message per invalid field, or None.
        temporary: The same command may succeed if retried later.
    """

    def __init__(
        self,
        code: int,
        message: str,
        fields: Mapping[str, str] | None = None,
        temporary: bool = False,
    ) -> None:
        super().__init__(f"{message} (error {int(code)})")
        try:
            self.code: int = ErrorCode(code)
        except ValueError:
            self.code = code
        self.message = message
        self.fields = dict(fields) if fields else None
        self.temporary = temporary

    @classmethod
    def from_dict(cls, error: Any) -> StagewireError:
        """The exception for an ``error`` object of a reply; tolerant of odd shapes."""
        if not isinstance(error, Mapping):
            return cls(ErrorCode.INTERNAL, f"malformed error {error!r}")
        code = error.get("code")
        fields = error.get("fields")
        return cls(
            code if isinstance(code, int) else ErrorCode.INTERNAL,
            str(error.get("message", "")),
            fields if isinstance(fields, Mapping) else None,
            bool(error.get("temporary", False)),
        )


class Disconnected(ClientError):
    """The connection ended.

    Raised by calls that were in flight when it ended, and, once the client
    gives up (a final code, or :meth:`Client.close`), by every later call and
    by subscription iterators.

    Attributes:
        code: The close code (a :class:`CloseCode` when known).
        reason: Why, as the server (or the client) put it.
        reconnect: Whether the client is reconnecting; False means it is over.
    """

    def __init__(self, code: int, reason: str, reconnect: bool) -> None:
        super().__init__(f"disconnected: {reason} ({int(code)})")
        try:
            self.code: int = CloseCode(code)
        except ValueError:
            self.code = code
        self.reason = reason
        self.reconnect = reconnect


class CannotConnect(ClientError):
    """The server could not be reached, or did not answer as a Stagewire server."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class ProtocolViolation(ClientError):
    """A frame or message from the server that the protocol does not allow."""
