"""Command dispatch: from a decoded frame to handler calls and replies.

Handlers are plain async functions registered in one explicit table
(``handlers.HANDLERS``): ``type → Handler(params model, function)``. A handler
gets a :class:`Context` and its validated parameters, and returns a result (any
JSON-compatible value) or raises a :class:`~server.errors.CommandError`.
Anything else it raises is logged and answered with a generic INTERNAL error:
a client never sees a traceback.

The commands of one connection run one after another, with one exception: a
handler may return :class:`Pipelined`, the rest of its work as a coroutine
(``publish`` does, after its checks). That coroutine runs as one task, which
also queues the reply, and the next command runs at once instead of waiting
for its round trip; the replies still go out in the order the commands came
(:class:`ReplyOrder`), and any command that is not pipelined waits until every
earlier reply is queued.

Replies are queued with ``Connection.send_reply``: a connection with a reply
is written before the connections that only have fan-out in the same flush.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Generic, Mapping, TypeVar

import pydantic

from server import protocol
from server.ops import logs
from server.connection import State
from server.errors import CommandError, Disconnect, ErrorCode, ProtocolError, StagewireError
from server.validation import field_errors

if TYPE_CHECKING:
    from server.auth.identity import Identity
    from server.auth.sessions import Authenticator
    from server.connection import Connection
    from server.node import Node

log = logging.getLogger("stagewire.dispatch")

P = TypeVar("P", bound=pydantic.BaseModel)


class Params(pydantic.BaseModel):
    """Base of every command's parameters: strict types, unknown fields ignored."""

    model_config = pydantic.ConfigDict(strict=True, extra="ignore", frozen=True)


#: Pipelined commands of one connection whose replies may be outstanding at once;
#: one more waits for the oldest, so a client cannot queue without bound.
MAX_PIPELINED = 64


class ReplyOrder:
    """The outstanding replies of one connection's pipelined commands, in command order."""

    __slots__ = ("_outstanding",)

    def __init__(self) -> None:
        # Made by the first pipelined command: most connections never send one.
        self._outstanding: collections.deque[asyncio.Future[None]] | None = None

    async def add(self, ctx: Context, command: protocol.Command, work: Coroutine[Any, Any, Any]) -> None:
        """Start ``work`` as a task that queues the reply of ``command`` once every earlier one is queued."""
        outstanding = self._outstanding
        if outstanding is None:
            outstanding = self._outstanding = collections.deque()
        try:
            while len(outstanding) >= MAX_PIPELINED:
                await asyncio.wait([outstanding[0]])
        except BaseException:
            work.close()  # the connection went away before the command started
            raise
        before = outstanding[-1] if outstanding else None
        done = ctx.node.spawn(_reply_when_done(ctx, command, work, before))
        outstanding.append(done)
        done.add_done_callback(lambda _: outstanding.remove(done))

    async def drain(self) -> None:
        """Wait until every outstanding reply is queued."""
        if self._outstanding:
            await asyncio.wait([self._outstanding[-1]])


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may touch."""

    conn: Connection
    node: Node
    auth: Authenticator
    replies: ReplyOrder = field(default_factory=ReplyOrder)

    @property
    def user(self) -> Identity:
        assert self.conn.identity is not None
        return self.conn.identity


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler result with a step to run right after the reply is queued.

    ``after`` runs synchronously once the reply is queued, before any other
    message can be queued for the connection: ``subscribe`` uses it to make the
    subscription live only after its reply.
    """

    result: Any
    after: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Pipelined:
    """A handler result whose work is still to run: the reply is the coroutine's result.

    The dispatcher starts ``work`` as a task and runs the next command without
    waiting for it. Tasks start in the order they are made, so ``work`` must
    take its place (a publish queued in its channel's stream) before it first
    suspends: then commands after it cannot overtake it.
    """

    work: Coroutine[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Handler(Generic[P]):
    params: type[P]
    func: Callable[[Context, P], Awaitable[Any]]


HandlerTable = Mapping[str, "Handler[Any]"]


def validation_error(exc: pydantic.ValidationError) -> CommandError:
    """A BAD_REQUEST error with one message per invalid field."""
    fields = field_errors(exc)
    return CommandError(ErrorCode.BAD_REQUEST, "invalid fields: " + ", ".join(fields), fields)


async def dispatch_frame(ctx: Context, data: str | bytes, table: HandlerTable) -> None:
    """Run every command of one frame in order, queueing a reply for each."""
    try:
        messages = protocol.decode_frame(data, ctx.conn.encoding)
    except ProtocolError as exc:
        ctx.conn.send_reply(protocol.error_reply(None, exc))
        return
    await run_messages(ctx, messages, table)


async def run_messages(ctx: Context, messages: list[Any], table: HandlerTable) -> None:
    """Run decoded messages as commands, in order, until the connection starts closing."""
    conn = ctx.conn
    for message in messages:
        if conn.state is State.CLOSING:
            return
        try:
            command = protocol.parse_command(message)
        except ProtocolError as exc:
            conn.send_reply(protocol.error_reply(exc.command_id, exc))
            continue
        await run_command(ctx, command, table)


async def run_command(ctx: Context, command: protocol.Command, table: HandlerTable) -> None:
    """Run one command and queue its reply; never raises but :class:`Disconnect`."""
    after: Callable[[], None] | None = None
    counters = ctx.node.counters
    counters.commands += 1
    # Lines logged while the command runs carry "<conn>/<command id>" as their request id.
    request = logs.request_id.set(f"{ctx.conn.id}/{command.id}")
    try:
        if command.type not in PIPELINABLE:
            await ctx.replies.drain()
        result = await _call(ctx, command, table)
        if isinstance(result, Pipelined):
            await ctx.replies.add(ctx, command, result.work)
            return
    except Disconnect:
        raise
    except Exception as exc:
        reply = _error_reply(ctx, command, exc)
    else:
        if isinstance(result, Reply):
            result, after = result.result, result.after
        reply = protocol.reply(command.id, result)
    finally:
        logs.request_id.reset(request)
    if command.type in PIPELINABLE:
        await ctx.replies.drain()  # refused at once: still answered after the earlier ones
    ctx.conn.send_reply(reply)
    if after is not None:
        after()


#: Command types whose handlers may return :class:`Pipelined`; the others wait
#: for the replies before them, so they see the effects of those commands.
PIPELINABLE = frozenset({"publish"})


async def _reply_when_done(
    ctx: Context, command: protocol.Command, work: Awaitable[Any], before: asyncio.Future[None] | None
) -> None:
    try:
        reply = protocol.reply(command.id, await work)
    except Exception as exc:
        reply = _error_reply(ctx, command, exc)
    if before is not None and not before.done():
        # Even for a done future asyncio.wait takes a loop tick: a chain of
        # pipelined replies would leave one per tick, and so would the next
        # commands of a client that waits for them.
        await asyncio.wait([before])
    ctx.conn.send_reply(reply)


def _error_reply(ctx: Context, command: protocol.Command, exc: Exception) -> dict[str, Any]:
    ctx.node.counters.command_errors += 1
    if isinstance(exc, StagewireError):
        return protocol.error_reply(command.id, exc)
    log.exception("command %s failed", command.type, exc_info=exc)
    return protocol.error_reply(command.id, protocol.internal_error())


async def _call(ctx: Context, command: protocol.Command, table: HandlerTable) -> Any:
    if not ctx.conn.allow_command():
        raise CommandError(ErrorCode.TOO_MANY_REQUESTS, "too many commands, slow down")
    handler = table.get(command.type)
    if handler is None:
        if command.type == "connect":
            raise CommandError(ErrorCode.BAD_REQUEST, "already connected")
        raise CommandError(ErrorCode.METHOD_NOT_FOUND, f"unknown command type {command.type!r}")
    try:
        params = handler.params.model_validate(command.params)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
    return await handler.func(ctx, params)
