"""Fuzzing the WebSocket entry point: the codec and the command dispatcher, with atheris.

Every input is run through what a frame from a client meets after the
handshake: ``dispatch_frame`` on a connected, authenticated connection of a
real node (memory broker, SQLite in memory, the handler table of
``handlers.REGISTRY``). Half the inputs are raw frames (any bytes, any text);
the other half are commands built from the input (known and unknown types,
known parameter names, any JSON values), so the fuzzer reaches the handlers.

What must hold for every input (:meth:`Harness.check`):

* nothing but a ``Disconnect`` escapes the dispatcher;
* everything written to the client decodes, and every reply is a result or a
  coded error: ``{"code": <an ErrorCode>, "message": str}``, never 100
  (internal error: a handler that crashed), never a traceback.

Usage::

    python -m bench.fuzz_ws -atheris_runs=1000000        # make fuzz-ws
    python -m bench.fuzz_ws -atheris_runs=1000000 -max_len=4096

The same harness runs under Hypothesis at small volume in ``make test``
(``tests/server/test_dispatch_fuzz.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import contextlib

import msgpack
import orjson
from aiohttp import web

if __name__ == "__main__":
    import atheris

    # Coverage feedback from the project's own code (run as a fuzzer only).
    instrumented: Any = atheris.instrument_imports(include=["server", "handlers", "models"])
else:
    instrumented = contextlib.nullcontext()

with instrumented:
    from handlers import REGISTRY
    from models.db import close_db, init_db
    from server.auth.sessions import Authenticator
    from server.broker.memory import MemoryBroker
    from server.config import Settings, load_settings
    from server.connection import Connection
    from server.dispatch import Context, dispatch_frame
    from server.errors import Disconnect, ErrorCode
    from server.node import Node
    from server.presence.memory import MemoryPresence
    from server.protocol import Encoding

ROOT = Path(__file__).resolve().parents[1]
COMMAND_TYPES = sorted({*REGISTRY.handlers, "connect", "nope", ""})  # lists: atheris picks from lists
PARAM_NAMES = ["channel", "data", "recover", "offset", "epoch", "since", "limit", "reverse", "token", "room",
               "message", "body", "name", "topic", "public", "user", "role", "before", "after",
               "idempotency_key", "id", "type"]
CODES = {int(code) for code in ErrorCode}
NAMESPACES = ["chat", "room", "typing", "news", "ops", "user", "log", "x"]


class MemoryTransport(asyncio.Transport):
    """Keeps what the server writes to the client."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data


def frames(data: bytes) -> list[bytes]:
    """The payloads of the unmasked server frames in ``data``."""
    out, i = [], 0
    while i < len(data):
        length, i = data[i + 1] & 0x7F, i + 2
        if length == 126:
            length, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        out.append(data[i:i + length])
        i += length
    return out


class Harness:
    """One node and one connected client per encoding; :meth:`run` feeds a frame, :meth:`check` judges."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node: Node | None = None
        self.db: Any = None
        self.contexts: dict[Encoding, tuple[Context, MemoryTransport]] = {}
        self.inputs = 0
        # Tortoise keeps its connections in a context variable: later inputs run in start()'s context.
        self.context: contextvars.Context | None = None

    async def start(self) -> None:
        self.db = await init_db(self.settings)
        self.node = Node(self.settings, MemoryBroker(), MemoryPresence(30.0), REGISTRY.authorizers)
        await self.node.start()
        auth = Authenticator(self.settings.auth, ["fuzz-secret"])
        await auth.register("fuzzer", "fuzz horse battery")
        token, _, _ = await auth.login("fuzzer", "fuzz horse battery", None)
        identity = await auth.verify(token)
        for encoding in (Encoding.JSON, Encoding.MSGPACK):  # the native protocol's
            transport = MemoryTransport()
            conn: Connection = self.node.connect(web.WebSocketResponse(), transport, encoding, "fuzz")
            self.node.set_identity(conn, identity)
            self.contexts[encoding] = (Context(conn, self.node, auth), transport)
        self.context = contextvars.copy_context()

    async def close(self) -> None:
        if self.node is not None:
            await self.node.close()
        await close_db(self.db)

    async def run(self, encoding: Encoding, frame: str | bytes) -> list[Any]:
        """Dispatch one frame; the messages the client got for it."""
        ctx, transport = self.contexts[encoding]
        self.inputs += 1
        try:
            await dispatch_frame(ctx, frame, REGISTRY.handlers)
        except Disconnect:
            pass
        ctx.conn.writer.flush()
        out = []
        for payload in frames(transport.take()):
            if encoding is Encoding.JSON:
                out += [orjson.loads(line) for line in payload.split(b"\n") if line]
            else:
                out += list(msgpack.Unpacker(io.BytesIO(payload), raw=False, strict_map_key=False))
        return out

    @staticmethod
    def check(messages: list[Any]) -> None:
        for message in messages:
            assert isinstance(message, dict), message
            error = message.get("error")
            if error is not None:
                assert error.get("code") in CODES, message
                assert isinstance(error.get("message"), str), message
                assert error["code"] != ErrorCode.INTERNAL, f"a handler crashed: {message}"
                assert "Traceback" not in json.dumps(message), message
            else:
                assert "result" in message or "type" in message, message


def fuzz_settings(directory: str) -> Settings:
    settings = load_settings(ROOT / "config.toml", environ={}, sections=REGISTRY.sections)
    return settings.replace(
        database={"url": f"sqlite://{directory}/fuzz.sqlite3"},
        auth={"password_time_cost": 1, "password_memory_cost": 1024, "password_parallelism": 1,
              "secrets": ["fuzz-secret"]},
        client={"command_rate": 1e9, "command_burst": 1_000_000_000, "write_buffer_limit": 1 << 30},
    )


def command_from(fdp: Any) -> dict[str, Any]:
    """A command built from the fuzzer's bytes (atheris.FuzzedDataProvider)."""
    command: dict[str, Any] = {"id": fdp.ConsumeIntInRange(0, 2**53), "type": fdp.PickValueInList(COMMAND_TYPES)}
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        command[fdp.PickValueInList(PARAM_NAMES)] = value_from(fdp, depth=0)
    return command


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
        return f"{fdp.PickValueInList(NAMESPACES)}:" \
               f"{fdp.ConsumeUnicodeNoSurrogates(8)}"
    if kind == 6:
        return [value_from(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.PickValueInList(PARAM_NAMES): value_from(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}


def main() -> None:
    directory = tempfile.mkdtemp(prefix="stagewire-fuzz-ws-")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    harness = Harness(fuzz_settings(directory))
    loop.run_until_complete(harness.start())
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        encoding = Encoding.MSGPACK if fdp.ConsumeBool() else Encoding.JSON
        if fdp.ConsumeBool():
            raw = fdp.ConsumeBytes(fdp.remaining_bytes())
            frame: str | bytes = raw if encoding is Encoding.MSGPACK else raw.decode("utf-8", "replace")
        else:
            commands = [command_from(fdp) for _ in range(fdp.ConsumeIntInRange(1, 3))]
            frame = (b"".join(msgpack.packb(c) for c in commands) if encoding is Encoding.MSGPACK
                     else "\n".join(orjson.dumps(c).decode() for c in commands))
        replies = loop.run_until_complete(loop.create_task(harness.run(encoding, frame), context=harness.context))
        try:
            Harness.check(replies)
        except AssertionError:
            print(f"input ({encoding.value}): {frame!r}", file=sys.stderr)
            raise
        if harness.inputs % 100_000 == 0:
            print(f"{harness.inputs} inputs, {harness.inputs / (time.monotonic() - started):.0f}/s", flush=True)

    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"{harness.inputs} inputs in {time.monotonic() - started:.0f} s, 0 crashes", flush=True)
        # The database's worker thread would keep the process alive.
        loop.run_until_complete(loop.create_task(harness.close(), context=harness.context))


if __name__ == "__main__":
    main()
