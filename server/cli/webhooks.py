"""``stagewire webhooks list|retry``: the webhook outbox and its dead letters, on the database.

Like ``user`` and ``apikey`` these work on the database of the config
(``[database] url``), with no server running. ``list`` shows each webhook's
pending and dead events and then the dead letters themselves; ``retry``
makes dead letters pending again (attempts reset): a running server sends
them within ``[hooks] poll_interval`` seconds, a stopped one when it starts.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from server.cli.admin import CommandFailed, _db_command, _table, _with_config
from server.config import Settings
from server.hooks import outbox


def add_commands(sub: Any) -> None:
    """Add ``webhooks`` to the ``stagewire`` subcommands."""
    hooks = sub.add_parser("webhooks", help="webhook outbox and dead letters").add_subparsers(
        dest="action", required=True)
    show = _with_config(hooks.add_parser("list", help="pending and dead events per webhook, and the dead letters"))
    show.add_argument("--webhook", help="only this webhook (its name, or its url when it has none)")
    show.add_argument("--limit", type=int, default=50, help="dead letters to show (default 50)")
    show.set_defaults(func=_db_command(webhooks_list))
    retry = _with_config(hooks.add_parser("retry", help="send dead letters again"))
    retry.add_argument("ids", nargs="*", type=int, help="dead letters by id (see list)")
    retry.add_argument("--webhook", help="every dead letter of this webhook")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    retry.set_defaults(func=_db_command(webhooks_retry))


async def webhooks_list(settings: Settings, args: argparse.Namespace) -> None:
    counts = {entry["webhook"]: entry for entry in await outbox.summary()}
    names = sorted({hook.name for hook in settings.webhooks} | counts.keys())
    if args.webhook is not None:
        names = [name for name in names if name == args.webhook]
    if not names:
        print("no webhooks are configured and the outbox is empty")
        return
    configured = {hook.name for hook in settings.webhooks}
    rows = []
    for name in names:
        entry = counts.get(name, {"pending": 0, "dead": 0, "oldest_pending_ms": None})
        oldest = entry["oldest_pending_ms"]
        rows.append((name + ("" if name in configured else " (not configured)"), str(entry["pending"]),
                     str(entry["dead"]), _when(oldest) if oldest is not None else "-"))
    _table(("WEBHOOK", "PENDING", "DEAD", "OLDEST PENDING"), rows)
    dead = await outbox.dead_letters(args.webhook, max(1, args.limit))
    if not dead:
        return
    print()
    _table(("ID", "WEBHOOK", "EVENT", "CHANNEL", "ATTEMPTS", "CREATED", "LAST ERROR"), [
        (str(row.id), row.webhook, row.name, row.channel or "-", str(row.attempts), _when(row.created_ms),
         row.last_error or "-") for row in dead])
    total = sum(counts[name]["dead"] for name in names if name in counts)
    if total > len(dead):
        print(f"({len(dead)} of {total} dead letters shown; --limit for more)")


async def webhooks_retry(settings: Settings, args: argparse.Namespace) -> None:
    if not args.ids and args.webhook is None and not args.all:
        raise CommandFailed("name dead letters by id, or give --webhook NAME or --all")
    if args.all and (args.ids or args.webhook is not None):
        raise CommandFailed("--all takes no ids or --webhook")
    count = await outbox.retry(args.webhook, args.ids or None)
    if count == 0:
        raise CommandFailed("no such dead letters")
    print(f"{count} dead letter{'s' if count != 1 else ''} pending again; "
          f"a running server sends {'them' if count != 1 else 'it'} within [hooks] poll_interval "
          f"({settings.hooks.poll_interval:g}s)")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
