"""``stagewire publish`` and ``stagewire tail``: a running server, seen from outside.

Both go through the Python client (``stagewire_client``, in ``client/``):
``publish`` through the server HTTP API with an API key, ``tail`` over a
WebSocket with a user's token. Secrets come from options or the environment
(``STAGEWIRE_API_KEY``, ``STAGEWIRE_TOKEN``, ``STAGEWIRE_PASSWORD``) and are
sent only in headers and the ``connect`` command, never in a URL, and never
printed. Every failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Any, Callable, Coroutine

from server.config import Settings

DEFAULT_HTTP_URL = "http://127.0.0.1:8080"
DEFAULT_WS_URL = "ws://127.0.0.1:8080/ws"


def add_commands(sub: Any) -> None:
    """Add ``publish`` and ``tail`` to the ``stagewire`` subcommands."""
    publish = sub.add_parser("publish", help="publish to a channel through the server API")
    publish.add_argument("channel")
    publish.add_argument("data", metavar="JSON", help="the publication, as JSON")
    publish.add_argument("--url", default=os.environ.get("STAGEWIRE_URL", DEFAULT_HTTP_URL),
                         help=f"server URL (default: $STAGEWIRE_URL or {DEFAULT_HTTP_URL})")
    publish.add_argument("--api-key", help="API key (default: $STAGEWIRE_API_KEY)")
    publish.add_argument("--idempotency-key", help="publish at most once with this key (5 minutes)")
    publish.set_defaults(func=_client_command(_publish))

    tail = sub.add_parser("tail", help="print a channel's live publications as JSON lines")
    tail.add_argument("channel")
    tail.add_argument("--url", default=os.environ.get("STAGEWIRE_WS_URL", DEFAULT_WS_URL),
                      help=f"WebSocket URL (default: $STAGEWIRE_WS_URL or {DEFAULT_WS_URL})")
    tail.add_argument("--token", help="a user's token (default: $STAGEWIRE_TOKEN)")
    tail.add_argument("--username", help="log in as this user instead of giving a token")
    tail.add_argument("--password", help="with --username (default: $STAGEWIRE_PASSWORD, or a prompt)")
    tail.add_argument("--msgpack", action="store_true", help="use the msgpack encoding")
    tail.add_argument("--count", type=int, help="stop after this many publications")
    tail.set_defaults(func=_client_command(_tail))


def _client_command(
    action: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> Callable[[Settings, argparse.Namespace], int]:
    """Run ``action``, turning the client's errors into one line on stderr."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            import stagewire_client  # noqa: F401
        except ImportError:
            return _fail("this command needs the stagewire-client package: pip install -e ./client")
        try:
            asyncio.run(action(args))
        except KeyboardInterrupt:
            return 0  # Ctrl-C is how tail is meant to end
        except _Usage as exc:
            return _fail(str(exc))
        except Exception as exc:
            message = _explain(exc, args.channel)
            if message is None:
                raise
            return _fail(message)
        return 0

    return run


class _Usage(Exception):
    """A missing option or a malformed argument."""


async def _publish(args: argparse.Namespace) -> None:
    from stagewire_client import ServerAPI

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise _Usage(f"JSON argument is not valid JSON: {exc}") from None
    api_key = args.api_key or os.environ.get("STAGEWIRE_API_KEY")
    if not api_key:
        raise _Usage("no API key: pass --api-key or set STAGEWIRE_API_KEY")
    async with ServerAPI(args.url, api_key) as api:
        position = await api.publish(args.channel, data, idempotency_key=args.idempotency_key)
    print(json.dumps({"channel": args.channel, "offset": position.offset, "epoch": position.epoch}))


async def _tail(args: argparse.Namespace) -> None:
    from stagewire_client import Client, login_token

    token: Any = args.token or os.environ.get("STAGEWIRE_TOKEN")
    if args.username:
        password = args.password or os.environ.get("STAGEWIRE_PASSWORD") or getpass.getpass("Password: ")
        url, username = args.url, args.username

        async def token_provider() -> str:  # also called again when the token expires
            return await login_token(url, username, password)

        token = token_provider
    if not token:
        raise _Usage("no token: pass --token, set STAGEWIRE_TOKEN, or log in with --username")

    def on_recovery(recovered: bool) -> None:
        if not recovered:
            print(f"stagewire: reconnected, but publications to {args.channel} were missed",
                  file=sys.stderr)

    encoding = "msgpack" if args.msgpack else "json"
    async with Client(args.url, token=token, encoding=encoding) as client:
        async with client.subscribe(args.channel, on_recovery=on_recovery) as sub:
            print(f"tailing {args.channel} from offset {sub.offset} (Ctrl-C to stop)",
                  file=sys.stderr, flush=True)
            seen = 0
            if args.count is not None and args.count <= 0:
                return
            async for pub in sub:
                line: dict[str, Any] = {"channel": pub.channel, "offset": pub.offset, "data": pub.data}
                if pub.info is not None:
                    line["info"] = dict(pub.info)
                print(json.dumps(line, ensure_ascii=False), flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    return


def _explain(exc: Exception, channel: str) -> str | None:
    """One line for an error of the client, or None for anything else (a bug)."""
    from stagewire_client import CannotConnect, Disconnected, ErrorCode, StagewireError

    if isinstance(exc, CannotConnect):
        return str(exc)
    if isinstance(exc, StagewireError):
        if exc.code == ErrorCode.TOKEN_EXPIRED:
            return "token expired: log in again"
        if exc.code == ErrorCode.UNKNOWN_CHANNEL:
            return f"unknown channel namespace {channel.partition(':')[0]!r} ({channel})"
        if exc.code == ErrorCode.UNAUTHORIZED:
            return f"not authorized: {exc.message}"
        return f"{exc.message} (error {int(exc.code)})"
    if isinstance(exc, Disconnected):
        if exc.code == 4003:
            return "token expired: log in again"
        return f"disconnected: {exc.reason} ({int(exc.code)})"
    if isinstance(exc, TimeoutError):
        return "no answer from the server in time"
    return None


def _fail(message: str) -> int:
    print(f"stagewire: {message}", file=sys.stderr)
    return 1
