"""``PusherWebhooks``: Pusher's webhooks, from the same durable outbox as Stagewire's own.

It is the :class:`~server.pusher.events.PusherEvents` of a node with hooks
(``server/hooks/service.py`` builds it, ``server/app.py`` plugs it into
``PusherService.events``). Each event of an app is stored once per webhook of
that app (``[[pusher.apps.webhooks]]``) whose ``event_types`` name it and
whose ``filter`` takes its channel, as an entry of Pusher's ``events`` list::

    {"name": "member_added", "channel": "presence-room", "user_id": "42"}

The hooks' senders deliver them like every webhook (one sender per webhook
in the cluster, batches of what is pending, retries, dead letters); only the
signature differs, Pusher's (:func:`destination`)::

    POST <url>
    X-Pusher-Key: <app key>
    X-Pusher-Signature: <hex HMAC-SHA256 of the body with the app secret>

    {"time_ms": 1718000000123, "events": [{...}, {...}]}

The events themselves are decided once across the cluster (see
:mod:`server.pusher.events`), so each reaches each webhook once.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

import orjson

from server.config import PusherAppSettings, PusherWebhookSettings
from server.hooks.outbox import Outbox, OutboxRow
from server.hooks.sender import Destination
from server.pusher import signing
from server.pusher.events import PusherEvent

log = logging.getLogger("stagewire.pusher.webhooks")

KEY_HEADER = "X-Pusher-Key"
SIGNATURE_HEADER = "X-Pusher-Signature"


def destination(app: PusherAppSettings, hook: PusherWebhookSettings) -> Destination:
    """Where ``hook`` of ``app`` sends, signed as Pusher signs (the ``pusher`` libraries' ``validate_webhook``)."""
    key, secret = app.key, app.secret

    def sign(body: bytes) -> Mapping[str, str]:
        return {KEY_HEADER: key, SIGNATURE_HEADER: signing.sign_bytes(secret, body)}

    return Destination(app.webhook_name(hook), hook.url, sign, batch_max=0 if hook.batch else 1)


class PusherWebhooks:
    """Routes each Pusher event to the webhooks of its app that want it; see the module docstring."""

    def __init__(self, node_id: str, apps: tuple[PusherAppSettings, ...], outbox: Outbox, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self._hooks = {app.id: [(app.webhook_name(hook), frozenset(hook.event_types), hook) for hook in app.webhooks]
                       for app in apps}
        self.destinations = [destination(app, hook) for app in apps for hook in app.webhooks]
        self._outbox = outbox
        self._clock = clock
        self._seq = 0
        self.emitted = 0

    def emit(self, app: PusherAppSettings, event: PusherEvent) -> None:
        names = [name for name, types, hook in self._hooks.get(app.id, ())
                 if event.name in types and hook.filter.takes(event.channel)]
        if not names:
            return
        now_ms = int(self._clock() * 1000)
        self._seq += 1
        event_id = f"{self.node_id}-p{self._seq:x}"
        payload = orjson.dumps(event.to_dict()).decode()
        self.emitted += 1
        self._outbox.put([OutboxRow(name, event_id, event.name, event.channel[:255], payload, now_ms)
                          for name in names])
