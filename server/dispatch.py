"""Command dispatch: from a decoded frame to handler calls and replies.

Handlers are plain async functions registered in one explicit table
(``handlers.HANDLERS``): ``type → Handler(params model, function)``. A handler
gets a :class:`Context` and its validated parameters, and returns a result (any
JSON-compatible value) or raises a :class:`~server.errors.CommandError`.
Anything else it raises is logged and answered with a generic INTERNAL error:
a client never sees a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Generic, Mapping, TypeVar

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


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may touch."""

    conn: Connection
    node: Node
    auth: Authenticator

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
        ctx.conn.send(protocol.error_reply(None, exc))
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
            conn.send(protocol.error_reply(exc.command_id, exc))
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
        result = await _call(ctx, command, table)
    except Disconnect:
        raise
    except StagewireError as exc:
        counters.command_errors += 1
        reply = protocol.error_reply(command.id, exc)
    except Exception:
        counters.command_errors += 1
        log.exception("command %s failed", command.type)
        reply = protocol.error_reply(command.id, protocol.internal_error())
    else:
        if isinstance(result, Reply):
            result, after = result.result, result.after
        reply = protocol.reply(command.id, result)
    finally:
        logs.request_id.reset(request)
    ctx.conn.send(reply)
    if after is not None:
        after()


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
