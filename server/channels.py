"""Channel names and the permission rules of their namespaces.

A channel is named ``namespace:name``. Its namespace, declared in
``config.toml`` under ``[namespaces.<ns>]``, says who may subscribe
(``authenticated``, ``owner`` — only the user whose username is ``name`` —,
``admin``, or ``custom``: an application authorizer decides, see
``handlers.AUTHORIZERS``), who may publish (``client``: any authenticated user,
``subscriber``: users subscribed to the channel, ``server``: only the server
API), and whether join/leave pushes are sent. Pure functions, no I/O.

Names whose part after the colon starts with ``#`` are internal to a
protocol shell (Pusher's ``#server-to-user-<id>``): no client may subscribe
to or publish on them through the native protocol; the server API may
publish there.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, NoReturn, Awaitable, Callable, Mapping, Protocol, runtime_checkable

import pydantic

from server.broker.base import HistoryOptions, StreamPosition
from server.config import NamespaceSettings
from server.errors import CommandError, ErrorCode

CHANNEL_RE = re.compile(r"^([a-z0-9_-]{1,64}):([A-Za-z0-9_.@=,:;#\-]{1,200})$")
INTERNAL_PREFIX = "#"

ChannelName = Annotated[
    str,
    # The pattern documents the rule (OpenAPI); split_channel checks it, with its own message.
    pydantic.Field(min_length=3, max_length=255, json_schema_extra={"pattern": CHANNEL_RE.pattern}),
]
"""A channel name field of a command or a request body."""


class Subject(Protocol):
    """Who is asking: the authenticated identity of a connection."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def split_channel(channel: str) -> tuple[str, str]:
    """``"ns:name"`` → ``("ns", "name")``, or a BAD_REQUEST error."""
    if not isinstance(channel, str):
        _bad_channel()
    return _split(channel)


@functools.lru_cache(maxsize=4096)
def _split(channel: str) -> tuple[str, str]:
    # A subscribe splits its channel three times (namespace, permission, internal
    # name), and most channels come again and again: remember the recent ones.
    match = CHANNEL_RE.match(channel)
    if match is None:
        _bad_channel()
    return match.group(1), match.group(2)


def _bad_channel() -> NoReturn:
    raise CommandError(
        ErrorCode.BAD_REQUEST,
        "channel must look like namespace:name",
        {"channel": "expected namespace:name ([a-z0-9_-] namespace, [A-Za-z0-9_.@=,:;#-] name)"},
    )


def namespace_of(channel: str, namespaces: Mapping[str, NamespaceSettings]) -> NamespaceSettings:
    """The settings of the channel's namespace, or an UNKNOWN_CHANNEL error."""
    ns, _ = split_channel(channel)
    settings = namespaces.get(ns)
    if settings is None:
        raise CommandError(ErrorCode.UNKNOWN_CHANNEL, f"unknown namespace {ns!r}")
    return settings


Authorizer = Callable[[Subject, str], Awaitable[bool]]
"""An application's rule for a ``subscribe = "custom"`` namespace: may ``subject`` read ``channel``?"""


@runtime_checkable
class NodeAuthorizer(Protocol):
    """An authorizer that keeps state per node, such as a cache that control messages invalidate.

    The node calls ``bind(node)`` once, when it is created, and from then on
    asks the :data:`Authorizer` it returned. Plain functions need no binding.
    """

    def bind(self, node: Any) -> Authorizer: ...


def bind_authorizers(authorizers: Mapping[str, Authorizer], node: Any) -> dict[str, Authorizer]:
    """The node's own authorizer table: each :class:`NodeAuthorizer` bound to ``node``."""
    return {ns: a.bind(node) if isinstance(a, NodeAuthorizer) else a for ns, a in authorizers.items()}


async def authorize_subscribe(
    subject: Subject, channel: str, ns: NamespaceSettings, authorizers: Mapping[str, Authorizer]
) -> None:
    """Subscribe (and history, presence) permission, custom namespaces included."""
    check_not_internal(channel)
    if ns.subscribe == "custom":
        authorizer = authorizers.get(ns.name)
        if authorizer is None or not await authorizer(subject, channel):
            raise CommandError(ErrorCode.PERMISSION_DENIED, f"not allowed to subscribe to {channel}")
        return
    check_subscribe(subject, channel, ns)


def check_subscribe(subject: Subject, channel: str, ns: NamespaceSettings) -> None:
    if ns.subscribe == "authenticated":
        return
    if ns.subscribe == "owner" and split_channel(channel)[1] == subject.username:
        return
    if ns.subscribe == "admin" and subject.role == "admin":
        return
    raise CommandError(ErrorCode.PERMISSION_DENIED, f"not allowed to subscribe to {channel}")


def check_not_internal(channel: str) -> None:
    """Refuse a client's use of a protocol shell's internal channel (``ns:#...``)."""
    if split_channel(channel)[1].startswith(INTERNAL_PREFIX):
        raise CommandError(ErrorCode.PERMISSION_DENIED, f"{channel} is internal to the server")


def check_publish(subject: Subject, channel: str, ns: NamespaceSettings, subscribed: bool) -> None:
    check_not_internal(channel)
    if ns.publish == "client":
        return
    if ns.publish == "subscriber" and subscribed:
        return
    raise CommandError(ErrorCode.PERMISSION_DENIED, f"not allowed to publish to {channel}")


def history_options(ns: NamespaceSettings) -> HistoryOptions:
    return HistoryOptions(size=ns.history_size, ttl=ns.history_ttl)


def publish_result(position: StreamPosition) -> dict[str, Any]:
    """The reply to a publish (WebSocket and HTTP): its offset and epoch, and ``delayed`` if so.

    ``delayed``: a durable publication is committed (so published), and live
    delivery waits for the broker to come back.
    """
    result: dict[str, Any] = {"offset": position.offset, "epoch": position.epoch}
    if position.delayed:
        result["delayed"] = True
    return result
