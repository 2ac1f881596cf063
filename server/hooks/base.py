"""The contracts between the core and the hooks part, and their do-nothing defaults.

The node tells an :class:`EventSink` what happened (a client connected,
subscribed, published, left); it does not wait, and it never learns where
the events go. The ``/ws`` handshake and the command handlers ask a
:class:`Proxy` for the backend's decisions; each call either returns the
decision or raises a :class:`~server.errors.StagewireError` that reaches the
client as it is (``UNAVAILABLE`` when the backend could not answer).

A node built without hooks (tests, embedders) gets :data:`NO_EVENTS` and
:data:`NO_PROXY`: Stagewire's own accounts, and no backend calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from server.errors import CommandError, ErrorCode

if TYPE_CHECKING:
    from server.auth.identity import Identity
    from server.auth.sessions import Authenticator
    from server.broker.base import StreamPosition
    from server.config import NamespaceSettings
    from server.connection import Connection


class EventSink(Protocol):
    """What the node reports. Every method returns at once: nothing here may block a caller."""

    def connected(self, conn: Connection) -> None:
        """``conn`` completed its ``connect`` (it has an identity)."""

    def disconnected(self, conn: Connection, code: int | None, reason: str) -> None:
        """``conn`` is gone (its subscriptions were reported first); its identity is None if it never connected."""

    def subscribed(self, conn: Connection, channel: str) -> None:
        """A subscription went live (its reply was queued)."""

    def unsubscribed(self, conn: Connection, channel: str) -> None:
        """A subscription ended: the client's ``unsubscribe``, the server's, or the connection's end."""

    def published(self, channel: str, position: StreamPosition, data: Any, info: dict[str, Any] | None) -> None:
        """A publication was accepted by the channel's stream (once per publication, on its node)."""

    def client_published(self, conn: Connection, channel: str, position: StreamPosition, data: Any) -> None:
        """A client's own ``publish`` command was accepted."""


class _NoEvents:
    def connected(self, conn: Connection) -> None:
        pass

    def disconnected(self, conn: Connection, code: int | None, reason: str) -> None:
        pass

    def subscribed(self, conn: Connection, channel: str) -> None:
        pass

    def unsubscribed(self, conn: Connection, channel: str) -> None:
        pass

    def published(self, channel: str, position: StreamPosition, data: Any, info: dict[str, Any] | None) -> None:
        pass

    def client_published(self, conn: Connection, channel: str, position: StreamPosition, data: Any) -> None:
        pass


NO_EVENTS: EventSink = _NoEvents()


@dataclass(frozen=True, slots=True)
class Connected:
    """Who a connecting client is, and the channels the backend subscribes it to."""

    identity: Identity
    channels: tuple[str, ...] = ()


class Proxy(Protocol):
    """The backend's decisions. Raise a ``StagewireError`` to refuse."""

    async def authenticate(
        self, auth: Authenticator, conn: Connection, headers: Mapping[str, str], token: str | None, data: Any
    ) -> Connected:
        """Who connects: a Stagewire token, or the connect proxy given the request's headers."""

    async def refresh(self, conn: Connection) -> Identity:
        """A ``refresh`` command without a token: the refresh proxy's new identity."""

    async def authorize_subscribe(self, conn: Connection, channel: str, ns: NamespaceSettings) -> None:
        """The subscribe proxy's word, after the namespace's own rule allowed the subscribe."""

    async def authorize_publish(self, conn: Connection, channel: str, ns: NamespaceSettings, data: Any) -> Any:
        """The publish proxy's word: the data to publish (the client's, or the backend's replacement)."""

    async def rpc(self, conn: Connection, method: str, data: Any) -> Any:
        """The RPC proxy's answer to a client's ``rpc`` command."""


class _NoProxy:
    async def authenticate(
        self, auth: Authenticator, conn: Connection, headers: Mapping[str, str], token: str | None, data: Any
    ) -> Connected:
        if token is None:
            raise CommandError(ErrorCode.UNAUTHORIZED, "a token is required", {"token": "required"})
        return Connected(await auth.verify(token))

    async def refresh(self, conn: Connection) -> Identity:
        raise CommandError(ErrorCode.BAD_REQUEST, "a token is required", {"token": "required"})

    async def authorize_subscribe(self, conn: Connection, channel: str, ns: NamespaceSettings) -> None:
        return None

    async def authorize_publish(self, conn: Connection, channel: str, ns: NamespaceSettings, data: Any) -> Any:
        return data

    async def rpc(self, conn: Connection, method: str, data: Any) -> Any:
        raise CommandError(ErrorCode.METHOD_NOT_FOUND, "no RPC backend is configured ([proxy] rpc)")


NO_PROXY: Proxy = _NoProxy()
