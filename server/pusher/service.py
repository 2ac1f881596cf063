"""``PusherService``: the node's Pusher state (``app[PUSHER]``, made by ``server.app.pusher_ctx``).

One per node (``app[PUSHER]``): the apps, this node's Pusher connections by
socket id and by signed-in user, the members manager, and the task that
refreshes their presence entries. ``terminate_connections`` is a control
message (``pusher.terminate``) every node acts on.

**The webhook seam**: :attr:`PusherService.events` is a
:class:`~server.pusher.events.PusherEvents`; it does nothing by default.
``server/app.py`` replaces it once, at start-up, with the hooks'
:class:`~server.pusher.webhooks.PusherWebhooks` (the apps' webhooks, from the
outbox), which from then on receives every event of :mod:`server.pusher.events`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.errors import CloseCode
from server.node import Node
from server.pusher.apps import PusherApps
from server.pusher.connection import PusherConnection
from server.pusher.events import NoEvents, PusherEvent, PusherEvents
from server.pusher.members import PusherMembers

log = logging.getLogger("stagewire.pusher")

TERMINATE = "pusher.terminate"


class PusherService:
    def __init__(self, node: Node, apps: PusherApps) -> None:
        self.node = node
        self.apps = apps
        self.events: PusherEvents = NoEvents()
        self.members = PusherMembers(node.presence.store, node.broker, node.settings.namespaces, self._emit)
        self.connections: dict[str, PusherConnection] = {}
        self._by_user: dict[tuple[str, str], set[PusherConnection]] = {}
        self._task: asyncio.Task[None] | None = None
        node.on_control_message(TERMINATE, self._on_terminate)
        node.presence.listeners.append(self.members.native_transition)

    # -- connections ------------------------------------------------------------------

    def add(self, conn: PusherConnection) -> None:
        self.connections[conn.socket_id] = conn

    def discard(self, conn: PusherConnection) -> None:
        self.connections.pop(conn.socket_id, None)
        if conn.user_id is not None:
            users = self._by_user.get((conn.app.id, conn.user_id))
            if users is not None:
                users.discard(conn)
                if not users:
                    del self._by_user[(conn.app.id, conn.user_id)]

    def signed_in(self, conn: PusherConnection, user_id: str, user_data: str) -> None:
        if conn.user_id is not None:
            self.discard(conn)
            self.add(conn)
        conn.user_id, conn.user_data = user_id, user_data
        self._by_user.setdefault((conn.app.id, user_id), set()).add(conn)

    async def terminate(self, app_id: str, user_id: str) -> None:
        """Close every connection signed in as ``user_id`` of the app, on every node."""
        await self.node.broadcast_control(TERMINATE, {"app": app_id, "user": user_id})

    def _on_terminate(self, message: dict[str, Any]) -> None:
        key = (str(message.get("app")), str(message.get("user")))
        for conn in list(self._by_user.get(key, ())):
            conn.close(CloseCode.FORCE_DISCONNECT, "connections terminated by the app")

    # -- events -----------------------------------------------------------------------

    def _emit(self, namespace: str, event: PusherEvent) -> None:
        for app in self.apps:
            if app.namespace == namespace:
                try:
                    self.events.emit(app, event)
                except Exception:
                    log.exception("Pusher event sink failed on %s", event.name)

    def emit(self, conn: PusherConnection, event: PusherEvent) -> None:
        """An event observed on one connection (client_event, cache_miss)."""
        try:
            self.events.emit(conn.app, event)
        except Exception:
            log.exception("Pusher event sink failed on %s", event.name)

    # -- refresh ----------------------------------------------------------------------

    async def run(self) -> None:
        interval = self.node.settings.broker.presence_ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.members.sweep(list(self.connections.values()), self.node.held_channels(), self.apps)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("Pusher presence refresh failed", exc_info=True)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="pusher-presence")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
