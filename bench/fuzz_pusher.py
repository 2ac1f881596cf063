"""Fuzzing the Pusher entry point: the codec and the message handlers of ``/app/{key}``, with atheris.

Every input is run through what a WebSocket message from a Pusher client
meets after the handshake: ``server.pusher.websocket.dispatch`` on an
established connection of a real node (memory broker, SQLite, one Pusher
app with client events on). Half the inputs are raw messages (any text, any
bytes); the other half are events built from the input: known and unknown
event names, every kind of channel, and signatures that are right half of
the time (the harness knows the socket id and the secret), so that the
fuzzer gets past the signature checks into subscriptions, presence members,
sign-in and client events.

What must hold for every input (:meth:`PusherHarness.check`):

* nothing escapes the handler (a ``Disconnect`` would be a closed loop);
* everything written to the client is a JSON object with an ``event``; every
  ``pusher:error`` carries one of Pusher's codes (never none, which is the
  reply to a handler that crashed) and a message, and no traceback; every
  ``pusher:subscription_error`` a ``type``, an ``error`` and a ``status``;
* a connection the server closes (a refused sign-in) got ``pusher:error``
  with its close code last. The harness then opens a new one.

Usage::

    python -m bench.fuzz_pusher -atheris_runs=1000000 -max_len=4096     # make fuzz-pusher

The same harness runs under Hypothesis at small volume in ``make test``
(``tests/pusher/test_fuzz.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import sys
import tempfile
import time
from typing import Any

import orjson

if __name__ == "__main__":
    import atheris

    # Coverage feedback from the project's own code (run as a fuzzer only).
    instrumented: Any = atheris.instrument_imports(include=["server", "handlers", "models"])
else:
    instrumented = contextlib.nullcontext()

with instrumented:
    from bench.fuzz_ws import MemoryTransport, frames, fuzz_settings
    from handlers import REGISTRY
    from models.db import close_db, init_db
    from server.broker.memory import MemoryBroker
    from server.config import PusherAppSettings, PusherSettings, Settings
    from server.connection import State
    from server.errors import Disconnect
    from server.node import Node
    from server.presence.memory import MemoryPresence
    from server.pusher import channels as handlers
    from server.pusher import protocol as pp
    from server.pusher import signing
    from server.pusher.apps import PusherApps
    from server.pusher.connection import PusherConnection, PusherWebSocket, new_socket_id
    from server.pusher.service import PusherService
    from server.pusher.websocket import dispatch

APP = PusherAppSettings(id="1", key="fuzz-key", secret="fuzz-secret", namespace="pusher", client_events=True,
                        client_event_rate=1e9, max_presence_members=20)
EVENTS = ["pusher:ping", "pusher:pong", "pusher:subscribe", "pusher:unsubscribe", "pusher:signin",
          "client-typing", "client-", "pusher:nope", "pusher_internal:member_added", "message", ""]
CHANNELS = ["orders", "private-a", "presence-a", "presence-b", "private-encrypted-a", "cache-a", "private-cache-a",
            "presence-cache-a", "#server-to-user-u1", "#server-to-user-", "private-", "presence-", "a" * 201,
            "bad name", "ops:stats", ""]
USERS = ["u1", "u2", "", "x" * 201, "a b"]
KEYS = ["channel", "auth", "channel_data", "user_data", "event", "data", "user_id", "user_info", "id"]
#: Pusher's codes (4000–4399): what a pusher:error may carry.
CODES = {v for k, v in vars(pp).items() if k.isupper() and type(v) is int and 4000 <= v < 4400}
#: Subscriptions a connection may gather before the harness starts a new one (keeps every input cheap).
MAX_HELD = 40


class PusherHarness:
    """One node, its Pusher service and one established connection; :meth:`run` feeds a message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node: Node | None = None
        self.service: PusherService | None = None
        self.conn: PusherConnection | None = None
        self.transport = MemoryTransport()
        self.db: Any = None
        self.inputs = 0
        self.reconnects = 0
        # Tortoise keeps its connections in a context variable: later inputs run in start()'s context.
        self.context: contextvars.Context | None = None

    async def start(self) -> None:
        self.db = await init_db(self.settings)
        self.node = Node(self.settings, MemoryBroker(), MemoryPresence(30.0), REGISTRY.authorizers)
        await self.node.start()
        self.service = PusherService(self.node, PusherApps(self.settings.pusher.apps, self.settings.namespaces))
        self._connect()
        self.context = contextvars.copy_context()

    def _connect(self) -> None:
        node, svc = self.node, self.service
        assert node is not None and svc is not None
        self.transport = MemoryTransport()
        self.conn = PusherConnection(PusherWebSocket(), self.transport, "fuzz", APP, new_socket_id(),
                                     settings=self.settings.client, flusher=node.flusher, counters=node.counters,
                                     spawn=node.spawn)
        node.adopt(self.conn)
        svc.add(self.conn)

    async def _reconnect(self) -> None:
        """What the shell's ``finally`` does, then a new connection."""
        node, svc, conn = self.node, self.service, self.conn
        assert node is not None and svc is not None and conn is not None
        channels = [pp.pusher_name(c) for c in conn.subscriptions]
        node.unregister(conn)
        svc.discard(conn)
        await handlers.forget(svc, conn, channels)
        await conn.wait_closed()
        self.reconnects += 1
        self._connect()

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()
        await close_db(self.db)

    @property
    def socket_id(self) -> str:
        assert self.conn is not None
        return self.conn.socket_id

    async def run(self, message: str | bytes) -> tuple[list[Any], tuple[int, str] | None]:
        """Handle one message; what the client got for it, and the close if the server closed it."""
        svc, conn = self.service, self.conn
        assert svc is not None and conn is not None
        self.inputs += 1
        try:
            await dispatch(svc, conn, message)
        except Disconnect as exc:
            raise AssertionError(f"the handler let a Disconnect out: {exc!r}") from None
        conn.writer.flush()
        out = [orjson.loads(payload) for payload in frames(self.transport.take())]
        closed = conn.closed_with if conn.state is State.CLOSING else None
        if closed is not None or len(conn.subscriptions) >= MAX_HELD:
            await self._reconnect()
        return out, closed

    @staticmethod
    def check(messages: list[Any], closed: tuple[int, str] | None) -> None:
        for message in messages:
            assert isinstance(message, dict) and isinstance(message.get("event"), str), message
            assert "Traceback" not in json.dumps(message), message
            data = message.get("data")
            if message["event"] == "pusher:error":
                assert isinstance(data, dict), message
                assert data.get("code") in CODES, f"an uncoded pusher:error (a handler crashed?): {message}"
                assert isinstance(data.get("message"), str), message
            elif message["event"] == "pusher:subscription_error":
                assert isinstance(data, dict) and isinstance(data.get("type"), str), message
                assert isinstance(data.get("error"), str) and type(data.get("status")) is int, message
                assert isinstance(message.get("channel"), str), message
        if closed is not None:
            assert messages, f"closed with {closed} and nothing said"
            last = messages[-1]
            assert last["event"] == "pusher:error" and last["data"]["code"] == pp.close_code(closed[0]), messages


def pusher_fuzz_settings(directory: str) -> Settings:
    return fuzz_settings(directory).replace(pusher=PusherSettings(apps=(APP,)))


def subscribe_data(harness: PusherHarness, channel: str, user: str, info: Any, signed: bool,
                   channel_data: str | None, auth: str) -> dict[str, Any]:
    """``pusher:subscribe``'s data: signed as the app would when ``signed``, else with ``auth`` as it is."""
    data: dict[str, Any] = {"channel": channel}
    if channel.startswith("presence-") and channel_data is None:
        channel_data = orjson.dumps({"user_id": user, "user_info": info}).decode()
    if channel_data is not None:
        data["channel_data"] = channel_data
    data["auth"] = (signing.channel_auth(APP, harness.socket_id, channel,
                                         channel_data if channel.startswith("presence-") else None)
                    if signed else auth)
    return data


def signin_data(harness: PusherHarness, user: str, info: Any, signed: bool, auth: str) -> dict[str, Any]:
    user_data = orjson.dumps({"id": user, "user_info": info}).decode()
    return {"user_data": user_data,
            "auth": signing.user_auth(APP, harness.socket_id, user_data) if signed else auth}


def event_from(fdp: Any, harness: PusherHarness) -> dict[str, Any]:
    """One Pusher event built from the fuzzer's bytes (atheris.FuzzedDataProvider)."""
    name = fdp.PickValueInList(EVENTS)
    channel = fdp.PickValueInList(CHANNELS) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(12)
    user = fdp.PickValueInList(USERS)
    signed = fdp.ConsumeBool()
    event: dict[str, Any] = {"event": name}
    if name == "pusher:subscribe":
        raw = fdp.ConsumeUnicodeNoSurrogates(30) if fdp.ConsumeIntInRange(0, 3) == 0 else None
        event["data"] = subscribe_data(harness, channel, user, value_from(fdp, 1), signed, raw,
                                       fdp.ConsumeUnicodeNoSurrogates(20))
    elif name == "pusher:signin":
        event["data"] = signin_data(harness, user, value_from(fdp, 1), signed, fdp.ConsumeUnicodeNoSurrogates(20))
    elif name == "pusher:unsubscribe":
        event["data"] = {"channel": channel}
    else:
        event["channel"] = channel
        event["data"] = value_from(fdp, 0)
    if fdp.ConsumeIntInRange(0, 5) == 0 and isinstance(event.get("data"), dict):
        event["data"] = orjson.dumps(event["data"]).decode()  # some SDKs send data as a JSON string
    if fdp.ConsumeIntInRange(0, 7) == 0:
        event[fdp.PickValueInList(KEYS)] = value_from(fdp, 1)
    return event


def value_from(fdp: Any, depth: int) -> Any:
    kind = fdp.ConsumeIntInRange(0, 7 if depth < 2 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**63), 2**63 - 1)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if kind == 5:
        return fdp.PickValueInList(CHANNELS)
    if kind == 6:
        return [value_from(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.PickValueInList(KEYS): value_from(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}


def main() -> None:
    directory = tempfile.mkdtemp(prefix="stagewire-fuzz-pusher-")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    harness = PusherHarness(pusher_fuzz_settings(directory))
    loop.run_until_complete(harness.start())
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        kind = fdp.ConsumeIntInRange(0, 3)
        message: str | bytes
        if kind == 0:
            message = fdp.ConsumeBytes(fdp.remaining_bytes())
        elif kind == 1:
            message = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        else:
            message = orjson.dumps(event_from(fdp, harness)).decode()
        replies, closed = loop.run_until_complete(loop.create_task(harness.run(message), context=harness.context))
        try:
            PusherHarness.check(replies, closed)
        except AssertionError:
            print(f"input: {message!r}", file=sys.stderr)
            raise
        if harness.inputs % 100_000 == 0:
            print(f"{harness.inputs} inputs, {harness.inputs / (time.monotonic() - started):.0f}/s, "
                  f"{harness.reconnects} connections closed by the server", flush=True)

    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        elapsed = time.monotonic() - started
        print(f"{harness.inputs} inputs in {elapsed:.0f} s ({harness.inputs / max(elapsed, 1e-9):.0f}/s), "
              f"0 crashes, {harness.reconnects} connections closed by the server", flush=True)
        # The database's worker thread would keep the process alive.
        loop.run_until_complete(loop.create_task(harness.close(), context=harness.context))


if __name__ == "__main__":
    main()
