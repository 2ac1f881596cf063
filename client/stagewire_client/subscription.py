"""A channel subscription: an async iterator of publications that survives reconnects.

The :class:`Client` owns the connection; a :class:`Subscription` owns what the
application sees of one channel: its queue of publications, the last position
seen (offset and epoch, which recovery needs), and whether the last recovery
was complete. The client calls the underscored methods from its reader, in
the order messages arrived, so recovered publications are always queued
before live ones.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generator

from stagewire_client import protocol
from stagewire_client.errors import ClientError, StagewireError
from stagewire_client.protocol import Position, PresenceEvent, Publication

if TYPE_CHECKING:
    from stagewire_client.client import Client

log = logging.getLogger("stagewire_client")

RecoveryCallback = Callable[[bool], "Awaitable[None] | None"]
PresenceCallback = Callable[[PresenceEvent], "Awaitable[None] | None"]

_END = object()


class Subscription:
    """One channel of a :class:`Client`; make it with :meth:`Client.subscribe`.

    Use it as an async iterator of :class:`Publication`; awaiting it (or
    entering ``async with``) waits until the server confirmed it::

        async with client.subscribe("news:main") as sub:
            async for pub in sub:
                ...

    After a reconnect the client resubscribes with the last offset and epoch
    seen. The publications missed meanwhile come out of the iterator first,
    in order, then the live ones. When they could not all be recovered,
    :attr:`recovered` is False and ``on_recovery(False)`` is called: the
    application must reload its state from its source of truth.

    Iteration stops (``StopAsyncIteration``) after :meth:`unsubscribe` or
    :meth:`Client.close`; it raises :class:`~stagewire_client.errors.Disconnected`
    when the client gave up reconnecting, and the :class:`StagewireError` of a
    refused (re)subscribe.

    Attributes:
        channel: The channel's name.
        offset: The offset of the last publication seen (or the channel's at
            subscribe time); None before the first subscribe result.
        epoch: The stream's epoch; None before the first subscribe result.
        recovered: None until a recovery was attempted; then whether every
            missed publication was recovered the last time.
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        *,
        since: Position | None = None,
        on_recovery: RecoveryCallback | None = None,
        on_presence: PresenceCallback | None = None,
    ) -> None:
        self.channel = channel
        self.offset: int | None = since.offset if since else None
        self.epoch: str | None = since.epoch if since else None
        self.recovered: bool | None = None
        self._client = client
        self._on_recovery = on_recovery
        self._on_presence = on_presence
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._error: BaseException | None = None
        self._ended = False

    @property
    def position(self) -> Position | None:
        """The last position seen, to resume from later (``subscribe(since=...)``)."""
        if self.offset is None or self.epoch is None:
            return None
        return Position(self.offset, self.epoch)

    @property
    def ended(self) -> bool:
        """Whether no more publications will come (unsubscribed, closed or failed)."""
        return self._ended

    # -- the application's side ----------------------------------------------

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self._wait_ready().__await__()

    async def _wait_ready(self) -> Subscription:
        await asyncio.shield(self._ready)
        return self

    async def __aenter__(self) -> Subscription:
        return await self._wait_ready()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.unsubscribe()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Publication:
        await asyncio.shield(self._ready)
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        assert isinstance(item, Publication)
        return item

    async def unsubscribe(self) -> None:
        """Stop receiving this channel; iteration ends once the queue is drained."""
        if self._ended:
            return
        self._end(None)
        await self._client._unsubscribe(self)

    # -- the client's side: called from its reader, in arrival order ----------

    def _subscribed(self, result: Any, recovering: bool) -> None:
        """A (re)subscribe succeeded: queue what was recovered, then note the position."""
        top = protocol.position(result)
        if recovering:
            recovered = bool(result.get("recovered"))
            self.recovered = recovered
            if recovered:
                for entry in result.get("publications") or []:
                    self._deliver(protocol.publication(self.channel, entry))
            else:
                log.warning("%s: missed publications could not be recovered", self.channel)
            self._call(self._on_recovery, recovered)
        # Even when recovered, the reply's position is the truth (an epoch change
        # with nothing to recover leaves the offset where it was).
        self.offset, self.epoch = top.offset, top.epoch
        if not self._ready.done():
            self._ready.set_result(None)

    def _deliver(self, pub: Publication) -> None:
        if self._ended:
            return
        if self.offset is not None and pub.offset <= self.offset:
            return  # already delivered (a recovery overlapping a live publication)
        self.offset = pub.offset
        self._queue.put_nowait(pub)

    def _presence(self, event: PresenceEvent) -> None:
        if not self._ended:
            self._call(self._on_presence, event)

    def _refused(self, error: StagewireError) -> None:
        """The server refused the (re)subscribe: the subscription is over."""
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: nobody may ever await it
        self._end(error)

    def _end(self, error: ClientError | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        if not self._ready.done():
            if error is None:
                self._ready.set_result(None)
            else:
                self._ready.set_exception(error)
                self._ready.exception()
        self._queue.put_nowait(_END)

    def _call(self, callback: Callable[[Any], Awaitable[None] | None] | None, arg: Any) -> None:
        self._client._invoke(callback, arg)

    @property
    def need_recovery(self) -> bool:
        """Whether the next subscribe should ask the server for what was missed."""
        return self.offset is not None and self.epoch is not None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} offset={self.offset} epoch={self.epoch}>"
