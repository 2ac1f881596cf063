"""The Stagewire WebSocket client: commands, subscriptions, reconnect and recovery.

    async with Client("ws://127.0.0.1:8080/ws", token=token) as client:
        async for pub in client.subscribe("news:main"):
            print(pub.offset, pub.data)

A :class:`Client` holds one :class:`~stagewire_client.connection.Link` at a
time. When it ends with a reconnect code (1001, 1006, 4000-4499) or a silent
server, the client opens a new one after a capped exponential backoff with
full jitter (or, first, the wait the server's ``disconnect`` push asked for
with ``reconnect_after``), authenticates again (asking the token provider for a fresh token
when the old one expired) and resubscribes every channel with the last
offset and epoch it saw, so that what was missed is recovered. An
``unsubscribe`` push with a code 2500-2999 (the server could not keep one
channel's stream whole) resubscribes that channel the same way, on the same
connection. Final codes
(4500-4999, 1000, 1009) end the client: calls and subscription iterators then
raise :class:`~stagewire_client.errors.Disconnected`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from typing import Any, Awaitable, Callable, Mapping

from stagewire_client import protocol
from stagewire_client.commands import Commands
from stagewire_client.connection import Link
from stagewire_client.errors import (
    CannotConnect,
    ClientError,
    CloseCode,
    Disconnected,
    ErrorCode,
    StagewireError,
    should_resubscribe,
)
from stagewire_client.protocol import ConnectInfo, Encoding, Position, PresenceEvent, Push
from stagewire_client.subscription import PresenceCallback, RecoveryCallback, Subscription

log = logging.getLogger("stagewire_client")

#: An async callable returning a fresh token, e.g. from ``POST /api/auth/login``.
TokenProvider = Callable[[], Awaitable[str]]


def backoff(attempt: int, min_delay: float, max_delay: float) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first).

    Full jitter: uniformly random in ``[0, min(max_delay, min_delay * 2**attempt)]``,
    so that clients cut off together come back spread over the whole step
    rather than bunched at its end.
    """
    return random.random() * min(max_delay, min_delay * 2.0 ** min(attempt, 32))


def hinted_delay(hint: Any) -> float | None:
    """Seconds a ``disconnect`` push's ``reconnect_after: [min_ms, max_ms]`` asks for, or None.

    Uniformly random in the range; None when ``hint`` is not such a range.
    """
    if not isinstance(hint, (list, tuple)) or len(hint) != 2:
        return None
    low, high = hint
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not 0 <= low <= high:
        return None
    return random.uniform(low, high) / 1000.0


def refresh_delay(expires_in: float) -> float:
    """When to refresh a token that expires in ``expires_in`` seconds: a little before."""
    margin = min(60.0, max(1.0, expires_in * 0.1))
    return max(0.0, expires_in - margin)


class Client(Commands):
    """A connection to a Stagewire server that reconnects and recovers by itself.

    Args:
        url: The server's WebSocket URL, ``ws://host:8080/ws`` (an
            ``http://host:8080`` URL is turned into that).
        token: A token, or an async callable returning one. With a callable,
            an expired token is replaced on reconnect, and the token is
            refreshed (``refresh`` command) shortly before it expires.
        encoding: ``"json"`` or ``"msgpack"``.
        reconnect: Reconnect after a connection loss or a reconnect code.
        min_delay: First reconnect backoff, in seconds.
        max_delay: Longest reconnect backoff, in seconds.
        request_timeout: Default time limit of a command, in seconds.
        open_timeout: Time limit of opening and authenticating a connection.
        ping_grace: Seconds of silence, beyond the server's ping interval,
            after which the server is taken for dead and the client reconnects.
        on_connect: Called with the :class:`ConnectInfo` of every connection.
        on_disconnect: Called with the :class:`Disconnected` of every loss;
            its ``reconnect`` says whether the client will try again.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | TokenProvider,
        encoding: str | Encoding = "json",
        reconnect: bool = True,
        min_delay: float = 0.5,
        max_delay: float = 20.0,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        ping_grace: float = 10.0,
        on_connect: Callable[[ConnectInfo], Awaitable[None] | None] | None = None,
        on_disconnect: Callable[[Disconnected], Awaitable[None] | None] | None = None,
    ) -> None:
        self.url = protocol.websocket_url(url)
        self.encoding = Encoding.parse(encoding)
        self.info: ConnectInfo | None = None
        self._provider: TokenProvider | None = None if isinstance(token, str) else token
        self._token: str | None = token if isinstance(token, str) else None
        self._reconnect = reconnect
        self._delays = (min_delay, max_delay)
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._ping_grace = ping_grace
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._subs: dict[str, Subscription] = {}
        self._link: Link | None = None
        self._connected = asyncio.Event()
        self._final: Disconnected | None = None
        self._runner: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is open and authenticated right now."""
        return self._link is not None

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        """The live subscriptions, by channel."""
        return dict(self._subs)

    async def connect(self) -> ConnectInfo:
        """Open the first connection; later ones are opened by the client itself.

        Raises:
            CannotConnect: Wrong URL, nothing listening, not a Stagewire server.
            StagewireError: ``connect`` refused: 101 (bad token), 109 (token expired).
        """
        if self._runner is not None or self._final is not None:
            raise ClientError("connect() may be called once per Client")
        link = await self._open()
        self._runner = asyncio.create_task(self._run(link), name="stagewire-client")
        assert link.info is not None
        return link.info

    async def close(self) -> None:
        """Close the connection; subscription iterators stop, calls raise Disconnected."""
        if self._final is not None and self._runner is None:
            return
        end = Disconnected(CloseCode.NORMAL, "closed by the client", False)
        # Not the current task: close() may be awaited by a callback we spawned.
        current = asyncio.current_task()
        tasks = [t for t in (self._runner, self._refresher, *self._tasks) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = self._refresher = None
        link, self._link = self._link, None
        if link is not None:
            link.fail_pending(end)
            await link.close()
        self._finish(end, None)

    # -- subscriptions ------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        *,
        since: Position | None = None,
        on_recovery: RecoveryCallback | None = None,
        on_presence: PresenceCallback | None = None,
    ) -> Subscription:
        """Subscribe to ``channel``; returns at once, see :class:`Subscription`.

        Args:
            since: Resume from a position saved earlier (``Subscription.position``):
                the first subscribe already recovers what came after it.
            on_recovery: Called with ``recovered`` after every resubscribe
                that asked for recovery; False means publications were lost.
            on_presence: Called with each ``join``/``leave`` :class:`PresenceEvent`.
        """
        if self._final is not None:
            raise self._gone()
        if channel in self._subs:
            raise StagewireError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel}")
        sub = Subscription(self, channel, since=since, on_recovery=on_recovery, on_presence=on_presence)
        self._subs[channel] = sub
        if self._link is not None:
            self._spawn(self._send_subscribe(self._link, sub))
        return sub

    # -- credentials --------------------------------------------------------------

    async def refresh(self, token: str | None = None) -> int:
        """Give the connection new credentials without reconnecting.

        Args:
            token: A fresh token of the same user; by default the token
                provider is asked for one.

        Returns:
            ``expires_in`` of the new token, in seconds.
        """
        if token is None:
            if self._provider is None:
                raise ClientError("refresh() needs a token, or a token provider")
            token = await self._provider()
        result = await self._request("refresh", {"token": token})
        self._token = token
        expires_in = int(result.get("expires_in", 0))
        self._schedule_refresh(expires_in)
        return expires_in

    # -- internals: requests ----------------------------------------------------

    async def _request(self, type_: str, params: Mapping[str, Any] | None = None, *,
                       timeout: float | None = None) -> Any:
        async with asyncio.timeout(self._request_timeout if timeout is None else timeout):
            link = await self._wait_link()
            future = await link.request(type_, params)
            return await future

    async def _wait_link(self) -> Link:
        while True:
            if self._final is not None:
                raise self._gone()
            if self._link is not None:
                return self._link
            if self._runner is None:
                raise ClientError("not connected: use `async with Client(...)` or `await client.connect()`")
            await self._connected.wait()

    async def _send_subscribe(self, link: Link, sub: Subscription, attempt: int = 0) -> None:
        recovering = sub.need_recovery
        params: dict[str, Any] = {"channel": sub.channel}
        if recovering:
            params.update(recover=True, offset=sub.offset, epoch=sub.epoch)

        def refused(error: StagewireError) -> None:
            if error.temporary and self._subs.get(sub.channel) is sub:
                # The server cannot serve it now (its broker is away): ask again, it stays ours.
                self._spawn(self._retry_subscribe(link, sub, attempt))
                return
            if self._subs.get(sub.channel) is sub:
                del self._subs[sub.channel]
            sub._refused(error)

        try:
            future = await link.request(
                "subscribe", params, lambda result: sub._subscribed(result, recovering), refused
            )
            await future
        except (StagewireError, Disconnected):
            pass  # refused: handled in the reader; lost: resubscribed on reconnect

    async def _retry_subscribe(self, link: Link, sub: Subscription, attempt: int) -> None:
        await asyncio.sleep(backoff(attempt, *self._delays))
        # Not if the connection was replaced meanwhile: the new one resubscribes by itself.
        if self._link is link and self._subs.get(sub.channel) is sub:
            await self._send_subscribe(link, sub, attempt + 1)

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
        link = self._link
        if link is None:
            return  # nothing to undo on the server: it forgot us with the connection
        try:
            await (await link.request("unsubscribe", {"channel": sub.channel}))
        except (StagewireError, Disconnected):
            pass  # not subscribed (a refused subscribe), or gone with the connection

    # -- internals: connections -------------------------------------------------

    async def _open(self) -> Link:
        """Open and authenticate a connection, then resubscribe everything."""
        if self._token is None:
            assert self._provider is not None
            self._token = await self._provider()
        link = await Link.open(self.url, self._token, self.encoding, self._open_timeout)
        assert link.info is not None
        self._link, self.info = link, link.info
        self._connected.set()
        for sub in self._subs.values():
            self._spawn(self._send_subscribe(link, sub))
        self._schedule_refresh(link.info.expires_in)
        self._invoke(self._on_connect, link.info)
        return link

    async def _run(self, link: Link) -> None:
        """Read the connection; when it ends, reconnect (or give up)."""
        while True:
            assert link.info is not None
            try:
                end = await link.read(link.info.ping + self._ping_grace, self._on_push)
            except Exception:  # a bug of ours, or a callback's: stop rather than loop
                log.exception("reading the connection failed")
                link.abort()
                end = Disconnected(1011, "internal client error", False)
            self._link = None
            self._connected.clear()
            if self._refresher is not None:
                self._refresher.cancel()
            retry = self._reconnect and end.reconnect
            if end.code == CloseCode.TOKEN_EXPIRED:
                # Reconnecting with the same expired token would be refused.
                retry = retry and self._provider is not None
                self._token = None if self._provider is not None else self._token
            end = Disconnected(end.code, end.reason, retry)
            link.fail_pending(end)
            if not retry:
                self._give_up(end)
                return
            log.warning("connection lost: %s (%d), reconnecting", end.reason, end.code)
            self._invoke(self._on_disconnect, end)
            next_link = await self._reopen(hinted_delay(link.reconnect_after))
            if next_link is None:
                return
            link = next_link

    async def _reopen(self, first_delay: float | None = None) -> Link | None:
        """Try again and again, with backoff, until a connection opens or a final refusal.

        ``first_delay``, when given (the server's hint), replaces the first step of the backoff.
        """
        attempt = 0
        while True:
            delay = first_delay if attempt == 0 and first_delay is not None else backoff(attempt, *self._delays)
            attempt += 1
            await asyncio.sleep(delay)
            try:
                return await self._open()
            except StagewireError as exc:
                if exc.code == ErrorCode.TOKEN_EXPIRED and self._provider is not None:
                    self._token = None
                elif not exc.temporary:
                    expired = exc.code == ErrorCode.TOKEN_EXPIRED
                    code = CloseCode.TOKEN_EXPIRED if expired else CloseCode.UNAUTHORIZED
                    self._give_up(Disconnected(code, exc.message, False))
                    return None
                log.warning("reconnect refused: %s", exc)
            except Disconnected as exc:
                if not exc.reconnect:
                    self._give_up(exc)
                    return None
                log.warning("reconnect failed: %s", exc)
            except CannotConnect as exc:
                log.warning("reconnect failed: %s", exc)
            except Exception:  # a failing token provider must not stop the client
                log.exception("reconnect failed")

    def _gone(self) -> Disconnected:
        """A fresh copy of the final :class:`Disconnected`, for each caller to raise."""
        assert self._final is not None
        return Disconnected(self._final.code, self._final.reason, False)

    def _give_up(self, end: Disconnected) -> None:
        log.warning("disconnected: %s (%d)", end.reason, end.code)
        self._invoke(self._on_disconnect, end)
        self._finish(end, end)

    def _finish(self, end: Disconnected, error: Disconnected | None) -> None:
        """Stop for good: calls raise ``end``; iterators end (with ``error`` if given)."""
        if self._final is None:
            self._final = end
        self._link = None
        self._connected.set()  # wakes the waiters, who find _final
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            sub._end(error)

    def _on_push(self, push: Push) -> None:
        body = push.body
        channel = body.get("channel")
        sub = self._subs.get(channel) if isinstance(channel, str) else None
        if push.type == "pub":
            if sub is not None:
                sub._deliver(protocol.publication(sub.channel, body))
        elif push.type in ("join", "leave"):
            if sub is not None:
                sub._presence(PresenceEvent(push.type, sub.channel, body.get("info") or {}))
        elif push.type == "unsubscribe":
            code = body.get("code")
            if sub is not None and isinstance(code, int) and should_resubscribe(code) and self._link is not None:
                # The server could not keep the stream whole: subscribe again from
                # the last offset seen; on_recovery learns whether it all came back.
                self._spawn(self._send_subscribe(self._link, sub))
            elif sub is not None:
                # The server ended the subscription (access lost): the iterator ends.
                self._subs.pop(sub.channel, None)
                sub._end(None)
        elif push.type == "error":
            log.warning("error from the server: %s", body.get("error"))
        # "ping" needs no answer (the read loop saw it arrive), "disconnect" is
        # kept by the link, and unknown pushes are ignored for compatibility.

    # -- internals: token refresh, tasks, callbacks -------------------------------

    def _schedule_refresh(self, expires_in: int) -> None:
        current = asyncio.current_task()
        if self._refresher is not None and self._refresher is not current:
            self._refresher.cancel()
        self._refresher = None
        if self._provider is not None and expires_in > 0:
            self._refresher = asyncio.create_task(self._refresh_later(refresh_delay(expires_in)))

    async def _refresh_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.refresh()
        except (ClientError, TimeoutError) as exc:
            # Not fatal: when the token expires the server closes with 4003,
            # and the reconnect asks the provider again.
            log.warning("token refresh failed: %s", exc)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _invoke(self, callback: Callable[[Any], Awaitable[None] | None] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                self._spawn(result)
        except Exception:
            log.exception("callback failed")

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed" if self._final else "connecting"
        return f"<Client {self.url} {state}>"
