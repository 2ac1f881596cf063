"""The ``Broker`` contract that every backend implements.

A broker moves publications between the nodes (server processes) of one
Stagewire cluster and owns each channel's stream position (offset and epoch)
and its bounded history.

Contract (checked by ``tests/broker/conformance.py`` for every backend):

* **Offsets.** ``publish`` assigns the channel's next offset atomically: offsets
  of one channel start at 1, increase by exactly one per publication, and no two
  publications of a channel ever share an offset, whichever node published.
* **Epochs.** A channel's epoch is an opaque string that stays the same while
  its stream lives. When the stream is reset (its history expired, or the
  backend lost it), the epoch changes and offsets start again from 1; so a
  ``(offset, epoch)`` pair never names two different publications.
* **Delivery.** After ``subscribe(channel)`` has returned, every publication to
  that channel is passed to the handler's ``on_publication`` exactly once per
  node while the backend is healthy, in offset order. A node only receives the
  channels it subscribed to. ``publish`` returns once the publication has its
  offset and is in the history; delivery to nodes, the publishing node
  included, may happen before or after it returns.
* **Order of concurrent publishes.** ``publish`` takes its place in the
  channel's order before it first suspends: publishes started one after the
  other (tasks created in order, none awaited yet) get their offsets in that
  order. This lets a client pipeline its publishes without reordering them.
* **Failure.** When the backend cannot accept a publication, ``publish`` raises
  :class:`BrokerUnavailable`; it never drops one silently. When a backend may
  have missed deliveries (a lost connection), it calls ``on_gap`` for the
  channels concerned once it is healthy again, and ``on_control_gap`` if
  control messages may have been missed too.
* **Idempotency.** A publish with an ``idempotency_key`` that was already used
  on the same channel within ``IDEMPOTENCY_TTL`` seconds publishes nothing and
  returns the first publication's position; the check and the publish are one
  atomic step.
* **Compare-and-set.** A publish with ``expected_offset=n`` succeeds only if it
  gets offset ``n``. If the channel is already at ``n`` or beyond, it publishes
  nothing and returns the current position flagged ``already=True`` (someone
  else published it); if the channel is behind ``n - 1``, it raises
  :class:`OffsetConflict`. Durable channels use this to publish rows that the
  database has already numbered.
* **Restore.** ``restore_position`` sets a channel's position (offset and
  epoch) when the backend lost it, so that a durable channel keeps the epoch
  and offsets its database rows carry. It never moves a channel back within
  its epoch: when the channel is already in that epoch at that offset or
  beyond, it changes nothing. Two nodes may restore one channel at once from
  what they read of the database, and the one that read before the other
  stored (and published) more must not undo those publications.
* **Join/leave and control messages** are best-effort broadcasts with the same
  per-channel order as publications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from server.errors import BrokerUnavailable, OffsetConflict

__all__ = [
    "IDEMPOTENCY_TTL", "Broker", "BrokerHandler", "BrokerUnavailable", "HistoryOptions",
    "OffsetConflict", "Publication", "Stream", "StreamPosition",
]

IDEMPOTENCY_TTL = 300.0


@dataclass(frozen=True, slots=True)
class StreamPosition:
    offset: int
    epoch: str
    # True when a publish published nothing: an idempotent retry, or a
    # compare-and-set publish that someone else already made.
    already: bool = field(default=False, compare=False)
    # True when a durable publication is committed but the broker could not
    # take it yet: it is published, and live delivery follows when the broker
    # is back (subscribers that reconnect meanwhile recover it from the database).
    delayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How much of a channel's stream to keep, from the channel's namespace."""

    size: int = 100
    ttl: float = 300.0
    # How long a stream's position (offset, epoch) outlives its last publication.
    meta_ttl: float = 86400.0


@dataclass(frozen=True, slots=True)
class Publication:
    channel: str
    offset: int
    epoch: str
    data: Any
    info: dict[str, Any] | None = None


class BrokerHandler(Protocol):
    """What a broker calls on its node. These calls must not block."""

    def on_publication(self, pub: Publication) -> None: ...

    def on_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None: ...

    def on_control(self, message: dict[str, Any]) -> None: ...

    def on_gap(self, channels: Sequence[str]) -> None: ...

    def on_control_gap(self) -> None:
        """Control messages may have been missed (the backend's connection was lost and is back)."""


class Stream(Protocol):
    """Where a channel's publications are numbered and kept: a broker, or the durable log.

    The node asks a channel's stream for its position and history without
    knowing which one it is (``server.durable.DurableLog`` answers from the
    database what the broker's window no longer holds).
    """

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        info: dict[str, Any] | None = None,
        history: HistoryOptions = HistoryOptions(),
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Give the publication the channel's next offset, keep it, and deliver it."""

    async def position(self, channel: str) -> StreamPosition:
        """The channel's current top offset and epoch (offset 0 for a new stream)."""

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        """Publications kept for ``channel`` and its current position.

        With ``since``, only publications after ``since.offset`` are returned,
        and only if ``since.epoch`` is the current epoch (otherwise none).
        """


class Broker(Stream, Protocol):
    """A pub/sub backend with per-channel streams. See the module docstring."""

    async def start(self, handler: BrokerHandler) -> None:
        """Connect and start delivering to ``handler``."""

    async def close(self) -> None:
        """Stop delivering and release every resource."""

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; called on the first local subscriber."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; called when the last local subscriber left."""

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        info: dict[str, Any] | None = None,
        history: HistoryOptions = HistoryOptions(),
        idempotency_key: str | None = None,
        expected_offset: int | None = None,
    ) -> StreamPosition:
        """Assign the next offset, keep it in history and deliver it to subscribed nodes."""

    async def restore_position(self, channel: str, position: StreamPosition) -> None:
        """Make ``position`` the channel's current offset and epoch (history is not restored).

        Nothing changes if the channel is in ``position.epoch`` at ``position.offset`` or beyond.
        """

    async def publish_presence(self, kind: str, channel: str, info: dict[str, Any]) -> None:
        """Broadcast a ``join`` or ``leave`` to the nodes subscribed to ``channel``."""

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Broadcast a control message to every node (disconnect a user, ...)."""

    @property
    def healthy(self) -> bool:
        """Whether the backend is reachable now."""

    @property
    def reconnects(self) -> int:
        """Times the backend's connection was re-established after a loss (for /metrics)."""
