"""Fuzzing the SSE entry point: ``GET /sse``'s checks and the stream's start, with atheris.

Every input is a request to ``/sse`` built from the fuzzer's bytes: any
``channel``/``channels``/``last_event_id``/``ticket`` parameters, a
``Last-Event-ID`` header (any text, or an id encoding positions, some of
them true ones), the session cookie or not, an ``Origin`` or not. It runs
through what the route runs (``server.sse.routes.admit``, then
``subscribe_all`` on an :class:`~server.sse.connection.SseConnection` of a
real node whose channels hold publications), minus the HTTP response.

What must hold for every input (:meth:`SseHarness.check`):

* a refusal before the stream is a ``StagewireError`` with a code (never
  ``INTERNAL``, never another exception: the route would answer 500);
* a stream starts with ``subscribed`` (or a coded ``error`` event), every
  event's data is JSON and every ``id`` decodes to positions.

Usage::

    python -m bench.fuzz_sse -atheris_runs=1000000 -max_len=1024     # make fuzz-sse

``tests/sse/test_fuzz.py`` runs the real route under Hypothesis in ``make test``.
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
from urllib.parse import urlencode

if __name__ == "__main__":
    import atheris

    instrumented: Any = atheris.instrument_imports(include=["server", "handlers", "models"])
else:
    instrumented = contextlib.nullcontext()

with instrumented:
    from http.cookies import SimpleCookie

    from aiohttp import web
    from multidict import CIMultiDict
    from yarl import URL

    from bench.fuzz_ws import MemoryTransport, fuzz_settings
    from handlers import REGISTRY
    from models.db import close_db, init_db
    from server.appkeys import AUTH, NODE, SETTINGS, SSE_TICKETS
    from server.auth.sessions import Authenticator
    from server.broker.memory import MemoryBroker
    from server.config import Settings
    from server.errors import CloseCode, ErrorCode, StagewireError
    from server.node import Node
    from server.presence.memory import MemoryPresence
    from server.protocol import error_reply
    from server.sse import codec
    from server.sse.connection import SseConnection, StreamEnd
    from server.sse.routes import admit, subscribe_all
    from server.sse.tickets import COOKIE, Tickets

NAMES = ["news:a", "chat:b", "user:fuzzer", "user:other", "nope:x", "news:", ":", "news:a,chat:b", "ops:stats",
         "room:r", ""]
KEYS = ["channel", "channel", "channels", "last_event_id", "ticket", "x"]
ORIGINS = ["http://127.0.0.1:8080", "https://evil.example", "null", ""]
CODES = {int(code) for code in ErrorCode}
PUBLISHED = 30  # publications in each of news:a and chat:b


class FuzzRequest:
    """What ``admit`` reads of a request, parsed as aiohttp parses it (aiohttp's mocked requests cost 25 ms)."""

    scheme = "http"
    host = "127.0.0.1:8080"

    def __init__(self, app: web.Application, params: list[tuple[str, str]], headers: dict[str, str]) -> None:
        self.app = app
        self.headers = CIMultiDict(headers)
        self.query = URL("/sse?" + urlencode(params)).query
        parsed: SimpleCookie = SimpleCookie(headers.get("Cookie", ""))
        self.cookies = {name: morsel.value for name, morsel in parsed.items()}


class SseHarness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node: Node | None = None
        self.app = web.Application()
        self.db: Any = None
        self.token = ""
        self.epochs: list[str] = [""]
        self.inputs = 0
        self.streams = 0
        self.context: contextvars.Context | None = None

    async def start(self) -> None:
        self.db = await init_db(self.settings)
        node = self.node = Node(self.settings, MemoryBroker(), MemoryPresence(30.0), REGISTRY.authorizers)
        await node.start()
        auth = Authenticator(self.settings.auth, ["fuzz-secret"])
        await auth.register("fuzzer", "fuzz horse battery")
        self.token, _, _ = await auth.login("fuzzer", "fuzz horse battery", None)
        for channel in ("news:a", "chat:b"):
            for n in range(PUBLISHED):
                position = await node.publish(channel, {"n": n})
            self.epochs.append(position.epoch)
        self.app[SETTINGS], self.app[NODE], self.app[AUTH] = self.settings, node, auth
        self.app[SSE_TICKETS] = Tickets(["fuzz-secret"], node.broker)
        self.context = contextvars.copy_context()

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()
        await close_db(self.db)

    async def run(self, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, Any]:
        """One request: ``("refused", error)`` or ``("stream", events)``."""
        node = self.node
        assert node is not None
        self.inputs += 1
        request: Any = FuzzRequest(self.app, params, headers)
        try:
            identity, names, resume = await admit(request)
        except StagewireError as exc:
            return "refused", exc
        self.streams += 1
        transport = MemoryTransport()
        end = StreamEnd()
        conn = SseConnection(end, transport, "fuzz", chunked=False, settings=self.settings.client,
                             flusher=node.flusher, counters=node.counters, spawn=node.spawn)
        node.adopt(conn)
        node.set_identity(conn, identity)
        try:
            await subscribe_all(conn, node, names, resume)
        except StagewireError as exc:  # as the route: an error event, and the stream ends
            conn.send(error_reply(None, exc))
            conn.close(CloseCode.INTERNAL if exc.code.temporary else CloseCode.BAD_REQUEST, exc.message)
        conn.writer.flush()
        end.drained.set()
        node.unregister(conn)
        await conn.wait_closed()
        return "stream", events_of(transport.take())

    @staticmethod
    def check(kind: str, result: Any) -> None:
        if kind == "refused":
            assert int(result.code) in CODES and result.code != ErrorCode.INTERNAL, result
            assert isinstance(result.message, str) and "Traceback" not in result.message, result
            return
        assert result, "a stream that said nothing"
        first, data, _ = result[0]
        if first == "error":
            assert data["error"]["code"] in CODES and data["error"]["code"] != ErrorCode.INTERNAL, result
        else:
            assert first == "subscribed" and isinstance(data["channels"], dict), result
        for name, data, event_id in result:
            if name == "error":
                assert data["error"]["code"] in CODES and data["error"]["code"] != ErrorCode.INTERNAL, result
            if event_id is not None:
                assert codec.decode_id(event_id) is not None, (name, event_id)


def events_of(body: bytes) -> list[tuple[str, Any, str | None]]:
    """``(event, data, id)`` of each event of a text/event-stream body (comments skipped)."""
    out = []
    for block in body.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return out


def request_from(fdp: Any, harness: SseHarness) -> tuple[list[tuple[str, str]], dict[str, str]]:
    params = []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        key = fdp.PickValueInList(KEYS)
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 0:
            value = fdp.ConsumeUnicodeNoSurrogates(20)
        elif kind == 1 or key == "last_event_id":
            value = event_id_from(fdp, harness)
        else:
            value = fdp.PickValueInList(NAMES)
        params.append((key, value))
    headers: dict[str, str] = {}
    if fdp.ConsumeIntInRange(0, 3):
        headers["Cookie"] = f"{COOKIE}={harness.token if fdp.ConsumeIntInRange(0, 7) else 'forged.token'}"
    if fdp.ConsumeBool():
        value = event_id_from(fdp, harness) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(40)
        headers["Last-Event-ID"] = value.replace("\r", "").replace("\n", "")
    if fdp.ConsumeIntInRange(0, 3) == 0:
        headers["Origin"] = fdp.PickValueInList(ORIGINS)
    return params, headers


def event_id_from(fdp: Any, harness: SseHarness) -> str:
    positions = {}
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        channel = fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(8)
        offset = fdp.ConsumeIntInRange(0, PUBLISHED + 2) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 2**63)
        epoch = fdp.PickValueInList(harness.epochs) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(8)
        positions[channel] = (offset, epoch)
    return codec.encode_id(positions)


def main() -> None:
    directory = tempfile.mkdtemp(prefix="stagewire-fuzz-sse-")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    harness = SseHarness(fuzz_settings(directory))
    loop.run_until_complete(harness.start())
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        params, headers = request_from(fdp, harness)
        kind, result = loop.run_until_complete(loop.create_task(harness.run(params, headers),
                                                                context=harness.context))
        try:
            SseHarness.check(kind, result)
        except AssertionError:
            print(f"input: {params!r} {headers!r}", file=sys.stderr)
            raise
        if harness.inputs % 100_000 == 0:
            print(f"{harness.inputs} inputs, {harness.inputs / (time.monotonic() - started):.0f}/s, "
                  f"{harness.streams} streams started", flush=True)

    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        elapsed = time.monotonic() - started
        print(f"{harness.inputs} inputs in {elapsed:.0f} s ({harness.inputs / max(elapsed, 1e-9):.0f}/s), "
              f"0 crashes, {harness.streams} streams started", flush=True)
        loop.run_until_complete(loop.create_task(harness.close(), context=harness.context))


if __name__ == "__main__":
    main()
