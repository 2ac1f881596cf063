"""The seam for Pusher webhooks: every event a webhook would carry, emitted once across the cluster.

The Pusher shell calls ``service.events.emit(app, event)`` (``PusherService.events``,
a :class:`PusherEvents`) at the one node that observed each of these:

=====================  ======================================================  ==================================
name                   when                                                    fields
=====================  ======================================================  ==================================
``channel_occupied``   a channel's first Pusher subscription in the cluster    channel
``channel_vacated``    its last one went (unsubscribed, closed, or expired)    channel
``member_added``       a user's first connection joined a presence channel     channel, user_id
``member_removed``     the user's last connection left (or expired)            channel, user_id
``client_event``       a client event was accepted                             channel, event, data, socket_id,
                                                                               user_id (presence channels)
``cache_miss``         a cache channel was subscribed with nothing cached      channel
=====================  ======================================================  ==================================

"Once" comes from the presence store: occupancy and membership are
user-level transitions there, which exactly one node observes (see
``server/presence/base.py``); native members of presence channels reach
``member_*`` through the presence tracker's listeners. ``emit`` must not block:
an implementation queues (a durable outbox, say) and returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from server.config import PusherAppSettings


@dataclass(frozen=True, slots=True)
class PusherEvent:
    """One event in Pusher's webhook terms (``name`` and the fields of the table above)."""

    name: str
    channel: str
    user_id: str | None = None
    event: str | None = None
    data: str | None = None
    socket_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As an entry of a Pusher webhook's ``events`` list."""
        return {k: v for k in self.__slots__ if (v := getattr(self, k)) is not None}


class PusherEvents(Protocol):
    def emit(self, app: PusherAppSettings, event: PusherEvent) -> None:
        """Take one event; must not block."""


class NoEvents:
    """The default: nothing listens (webhooks are off)."""

    def emit(self, app: PusherAppSettings, event: PusherEvent) -> None:
        return None
