"""``WebhookSender``: one loop per webhook, sending its outbox events in order, in batches.

A webhook is a :class:`Destination`: a name (its rows in the outbox), a URL,
and how a body is signed: Stagewire's ``X-Stagewire-Signature`` for the
``[[webhooks]]`` (:func:`native`), Pusher's ``X-Pusher-Key`` and
``X-Pusher-Signature`` for the webhooks of Pusher apps
(:mod:`server.pusher.webhooks`). Everything else is the same for both.

Each webhook has one sender in the whole cluster at a time: the node holding
its lease (a row of ``webhook_leases``, renewed while it sends, taken over
by another node once it lapses). The sender POSTs the webhook's oldest
pending events, up to ``batch_max`` of them, as one signed body::

    {"time_ms": 1718000000123, "events": [{...}, {...}]}

and deletes them when the receiver answers 2xx. Any other answer, a
connection error or no answer within ``timeout`` fails the whole batch: its
events count one more attempt and the webhook waits before it tries again,
``retry_min_delay`` doubling up to ``retry_max_delay`` (±20% jitter). An
event that reached ``max_attempts`` becomes a dead letter and the events
after it go on. Because a webhook's events are always sent oldest first and
a failed batch is sent again before anything newer, the events of a channel
arrive in the order they happened; an event may arrive twice only if a
receiver's 2xx was lost on the way back (events carry an ``id`` to tell).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from models.webhook import WebhookEvent
from server.config import HooksSettings, WebhookSettings
from server.hooks import outbox, signing
from server.hooks.http import BackendFailure, BackendHttp

log = logging.getLogger("stagewire.hooks.sender")


def backoff(attempts: int, settings: HooksSettings, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait after a batch whose oldest event failed ``attempts`` times."""
    base = min(settings.retry_max_delay, settings.retry_min_delay * 2 ** max(0, attempts - 1))
    return float(base * (0.8 + 0.4 * jitter()))


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one webhook's events go, and the headers that sign a body for it."""

    name: str
    url: str
    sign: Callable[[bytes], Mapping[str, str]]
    #: Most events in one POST; 0 for ``[hooks] batch_max``.
    batch_max: int = 0


def native(hook: WebhookSettings) -> Destination:
    """A ``[[webhooks]]`` entry: signed with its own secret (docs/hooks.md)."""
    secret, name = hook.secret, _header_safe(hook.name)

    def sign(payload: bytes) -> Mapping[str, str]:
        return {signing.HEADER: signing.sign(secret, payload), "X-Stagewire-Webhook": name}

    return Destination(hook.name, hook.url, sign)


def body(time_ms: int, payloads: list[str]) -> bytes:
    """The POST body: the stored events joined as they are, never re-encoded."""
    return b'{"time_ms":%d,"events":[%s]}' % (time_ms, ",".join(payloads).encode())


class WebhookSender:
    """Delivers one webhook's events; see the module docstring."""

    def __init__(self, hook: Destination, settings: HooksSettings, http: BackendHttp, owner: str) -> None:
        self.hook = hook
        self._settings = settings
        self._http = http
        self._owner = owner
        self._wakeup = asyncio.Event()
        self._lease_until = 0
        # Outbox rows the receiver answered 2xx for but that could not be deleted yet (the database was away).
        self._sent_not_deleted: set[int] = set()
        self.target = f"webhook:{hook.name}"
        self.delivered = 0
        self.dead = 0
        self.batches = 0

    @property
    def lease_ms(self) -> int:
        # Renewed at half of it before a POST, so it outlasts a POST that times out.
        # A node that dies holds up its webhooks this long before another takes over.
        return int(3 * self._settings.timeout * 1000)

    def wake(self) -> None:
        """New events were stored for this webhook."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhook %s: outbox unavailable", self.hook.name, exc_info=True)
                self._lease_until = 0
                await self._sleep(self._settings.poll_interval)

    async def close(self) -> None:
        if self._sent_not_deleted:
            try:
                await outbox.delivered(sorted(self._sent_not_deleted))
            except Exception:
                log.warning("webhook %s: %d delivered events stay in the outbox and will be sent again",
                            self.hook.name, len(self._sent_not_deleted))
        if self._lease_until:
            try:
                await outbox.release_lease(self.hook.name, self._owner)
            except Exception:
                log.debug("releasing the lease of %s failed", self.hook.name, exc_info=True)

    async def _step(self) -> None:
        if self._sent_not_deleted:
            # The receiver has these already: forget them before anything is sent again,
            # or they would be sent twice (the database was away when they were answered).
            await outbox.delivered(sorted(self._sent_not_deleted))
            self._sent_not_deleted.clear()
        if not await self._lease():
            await self._sleep(self.lease_ms / 3000)
            return
        rows = await outbox.head(self.hook.name, self.hook.batch_max or self._settings.batch_max)
        if not rows:
            await self._sleep(self._settings.poll_interval)
            return
        wait = (rows[0].next_attempt_ms - _now_ms()) / 1000
        if wait > 0:
            # Backing off: new events do not cut it short, but a poll notices a
            # retried dead letter (older, so it goes first).
            await self._sleep(min(wait, self._settings.poll_interval), wakeable=False)
            return
        await self._send(rows)

    async def _send(self, rows: list[WebhookEvent]) -> None:
        payload = body(_now_ms(), [row.payload for row in rows])
        headers = dict(self.hook.sign(payload))
        self.batches += 1
        try:
            answer = await self._http.post(self.target, self.hook.url, payload, headers, self._settings.timeout)
            error = None if 200 <= answer.status < 300 else f"answered {answer.status}"
            if error is not None:
                self._http.fail(self.target, "status")
        except BackendFailure as exc:
            error = exc.detail
        ids = [row.id for row in rows]
        if error is None:
            self.delivered += len(rows)
            self._sent_not_deleted.update(ids)
            await outbox.delivered(ids)
            self._sent_not_deleted.difference_update(ids)
            return
        attempts = rows[0].attempts + 1
        delay = backoff(attempts, self._settings)
        died = await outbox.failed(ids, error, _now_ms() + int(delay * 1000), self._settings.max_attempts)
        self.dead += died
        log.warning("webhook %s: %d events not delivered (%s); attempt %d, next in %.1fs%s",
                    self.hook.name, len(rows), error, attempts, delay,
                    f"; {died} now dead letters" if died else "")

    async def _lease(self) -> bool:
        now = _now_ms()
        if self._lease_until - now > self.lease_ms // 2:
            return True
        if await outbox.lease(self.hook.name, self._owner, now, now + self.lease_ms):
            self._lease_until = now + self.lease_ms
            return True
        self._lease_until = 0
        return False

    async def _sleep(self, seconds: float, wakeable: bool = True) -> None:
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            pass
        self._wakeup.clear()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _header_safe(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
