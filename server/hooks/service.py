"""``Hooks``: the hooks part of one node, built from the settings and started by ``server/app.py``.

It owns the pooled HTTP client, the outbox writer, one sender per webhook
(the ``[[webhooks]]`` and the Pusher apps' webhooks, whose events come from
:class:`~server.pusher.webhooks.PusherWebhooks`), the cluster transitions (only when a webhook asks for occupancy or member
events) and the proxy, and gives the node its :class:`HookEvents` and
:class:`BackendProxy`. Closing stores what is still queued and lets the
cluster know what this node no longer holds before the HTTP client, the
broker's Redis client and the database close behind it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from server.config import ConfigError, Settings
from server.hooks.events import MEMBERS, OCCUPANCY, HookEvents
from server.hooks.http import BackendHttp
from server.hooks.outbox import Outbox
from server.hooks.proxy import BackendProxy
from server.hooks.sender import WebhookSender, native
from server.hooks.transitions import TransitionStore, Transitions
from server.hooks.transitions_memory import MemoryTransitions
from server.hooks.transitions_redis import RedisTransitions
from server.pusher.webhooks import PusherWebhooks
from server.tasks import stop_tasks

if TYPE_CHECKING:
    from server.broker.redis_client import RedisClient
    from server.node import Node

log = logging.getLogger("stagewire.hooks")

# Each step of closing (flush the transitions, commit the outbox, stop the senders) within the shutdown budget.
CLOSE_TIMEOUT = 1.0


class Hooks:
    """Webhooks and proxies of one node.

    Args:
        settings: everything; ``[hooks]``, ``[proxy]``, ``[[webhooks]]`` and the namespaces are read.
        node: the node whose events these are.
        redis: the node's Redis client in Redis mode (the transitions are then cluster-wide).
    """

    def __init__(self, settings: Settings, node: Node, redis: RedisClient | None) -> None:
        hs = settings.hooks
        self.settings = settings
        self.http = BackendHttp(hs.max_connections)
        self.outbox = Outbox(max_batch=settings.database.group_commit_max, queue_max=hs.queue_max,
                             on_commit=self._committed)
        self.events = HookEvents(node.id, settings.webhooks, self.outbox)
        self.pusher = PusherWebhooks(node.id, settings.pusher.apps, self.outbox)
        destinations = [native(hook) for hook in settings.webhooks] + self.pusher.destinations
        self.senders = {dest.name: WebhookSender(dest, hs, self.http, node.id) for dest in destinations}
        if len(self.senders) != len(destinations):
            raise ConfigError("webhooks: a [[webhooks]] name is also the name of a Pusher app's webhook")
        self.transitions: Transitions | None = None
        if any(set(hook.events) & (OCCUPANCY | MEMBERS) for hook in settings.webhooks):
            ttl = settings.broker.presence_ttl
            store: TransitionStore = (RedisTransitions(redis, node.id, hs.grace, ttl) if redis is not None
                                      else MemoryTransitions(hs.grace))
            self.transitions = Transitions(store, self.events.transition,
                                           settle_interval=max(0.05, min(0.5, hs.grace / 8)),
                                           heartbeat_interval=ttl / 3)
            self.events.transitions = self.transitions
        self.proxy = BackendProxy(settings.proxy, settings.namespaces, self.http, node.set_identity, node.spawn)
        self.events.on_connect.append(self.proxy.connected)
        self.events.on_disconnect.append(self.proxy.forget)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.outbox.start()
        if self.transitions is not None:
            await self.transitions.start()
        self._tasks = [asyncio.create_task(sender.run(), name=f"webhook-{name}")
                       for name, sender in self.senders.items()]

    async def close(self) -> None:
        if self.transitions is not None:
            await self.transitions.close(CLOSE_TIMEOUT)
        await self.outbox.close(CLOSE_TIMEOUT)
        await stop_tasks(self._tasks, CLOSE_TIMEOUT)
        await asyncio.gather(*(sender.close() for sender in self.senders.values()))
        await self.http.close()

    def wake(self, webhook: str | None = None) -> None:
        """Tell the senders (or one) that events are waiting, e.g. dead letters made pending again."""
        for name, sender in self.senders.items():
            if webhook is None or name == webhook:
                sender.wake()

    def _committed(self, webhooks: set[str]) -> None:
        for name in webhooks:
            sender = self.senders.get(name)
            if sender is not None:
                sender.wake()
