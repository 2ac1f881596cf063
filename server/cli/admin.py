"""``stagewire user ...`` and ``stagewire apikey ...``: accounts and API keys, on the database.

These commands work on the database named by the config (``[database] url``,
or ``STAGEWIRE_DATABASE__URL``), applying pending migrations first like the
server does; no server needs to run. Passwords are read from a prompt or
stdin, never from the command line, and an API key is printed once, when it
is made, and never stored: only its SHA-256 is.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hmac
import re
import secrets
import sys
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

from tortoise.exceptions import IntegrityError

from models.apikey import ApiKey, key_hash
from models.user import Role, User
from server.auth.sessions import check_password, check_username
from server.config import Settings
from server.auth.passwords import Passwords

KEY_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ROLES = [role.value for role in Role]


class CommandFailed(Exception):
    """A refusal to report in one line on stderr (exit status 1)."""


def add_commands(sub: Any) -> None:
    """Add ``user`` and ``apikey`` to the ``stagewire`` subcommands."""
    user = sub.add_parser("user", help="manage accounts").add_subparsers(dest="action", required=True)
    create = _with_config(user.add_parser("create", help="create an account"))
    create.add_argument("username")
    create.add_argument("--role", choices=ROLES, default=Role.USER.value)
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from stdin instead of prompting")
    create.set_defaults(func=_db_command(user_create))
    _with_config(user.add_parser("list", help="list accounts")).set_defaults(func=_db_command(user_list))
    set_role = _with_config(user.add_parser("set-role", help="change an account's role"))
    set_role.add_argument("username")
    set_role.add_argument("role", choices=ROLES)
    set_role.set_defaults(func=_db_command(user_set_role))

    apikey = sub.add_parser("apikey", help="manage server API keys").add_subparsers(dest="action", required=True)
    create = _with_config(apikey.add_parser("create", help="make a key (printed once)"))
    create.add_argument("name")
    create.set_defaults(func=_db_command(apikey_create))
    _with_config(apikey.add_parser("list", help="list keys (names and dates)")).set_defaults(
        func=_db_command(apikey_list))
    revoke = _with_config(apikey.add_parser("revoke", help="revoke a key"))
    revoke.add_argument("name")
    revoke.set_defaults(func=_db_command(apikey_revoke))


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", dest="config_sub", help="path to config.toml")
    return parser


def _db_command(
    action: Callable[[Settings, argparse.Namespace], Awaitable[None]],
) -> Callable[[Settings, argparse.Namespace], int]:
    """Run ``action`` with the database open; a refusal is one line on stderr."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from models.db import close_db, init_db

        async def with_db() -> None:
            ctx = await init_db(settings, migrate=True)
            try:
                await action(settings, args)
            finally:
                await close_db(ctx)

        try:
            asyncio.run(with_db())
        except CommandFailed as exc:
            print(f"stagewire: {exc}", file=sys.stderr)
            return 1
        return 0

    return run


# -- users ------------------------------------------------------------------------


async def user_create(settings: Settings, args: argparse.Namespace) -> None:
    username = args.username.lower()
    try:
        check_username(username)
    except ValueError as exc:
        raise CommandFailed(f"invalid username: {exc}") from None
    if await User.exists(username=username):
        raise CommandFailed(f"user {username!r} already exists")
    password = _read_password(args.password_stdin)
    password_hash = await Passwords.from_settings(settings.auth).hash(password)
    try:
        await User.create(username=username, password_hash=password_hash, role=args.role)
    except IntegrityError:
        raise CommandFailed(f"user {username!r} already exists") from None
    print(f"created user {username} ({args.role})")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if not hmac.compare_digest(getpass.getpass("Repeat it: ").encode(), password.encode()):
            raise CommandFailed("the passwords differ")
    try:
        return check_password(password)
    except ValueError as exc:
        raise CommandFailed(f"invalid password: {exc}") from None


async def user_list(settings: Settings, args: argparse.Namespace) -> None:
    admins = {name.lower() for name in settings.auth.admins}
    rows = []
    for user in await User.all().order_by("username"):
        role = user.role + (" (admin by [auth] admins)" if user.username in admins else "")
        rows.append((user.username, role, _when(user.created_at)))
    _table(("USERNAME", "ROLE", "CREATED"), rows)


async def user_set_role(settings: Settings, args: argparse.Namespace) -> None:
    username = args.username.lower()
    if not await User.filter(username=username).exists():
        raise CommandFailed(f"no user named {username!r}")
    await User.filter(username=username).update(role=args.role)
    print(f"{username} is now {args.role}")
    if args.role != Role.ADMIN.value and username in {n.lower() for n in settings.auth.admins}:
        print(f"note: {username} stays admin while listed in [auth] admins", file=sys.stderr)


# -- API keys ---------------------------------------------------------------------


async def apikey_create(settings: Settings, args: argparse.Namespace) -> None:
    if not KEY_NAME_RE.fullmatch(args.name):
        raise CommandFailed("invalid key name: 1 to 64 of A-Z a-z 0-9 _ . -")
    if await ApiKey.exists(name=args.name):
        raise CommandFailed(f"an API key named {args.name!r} already exists")
    key = secrets.token_urlsafe(32)
    try:
        await ApiKey.create(name=args.name, key_hash=key_hash(key))
    except IntegrityError:
        raise CommandFailed(f"an API key named {args.name!r} already exists") from None
    # The key alone on stdout, so that KEY=$(stagewire apikey create ci) works.
    print(key)
    print(f"API key {args.name!r} created. It is shown only this once: store it now.", file=sys.stderr)


async def apikey_list(settings: Settings, args: argparse.Namespace) -> None:
    rows = [
        (key.name, _when(key.created_at), _when(key.revoked_at) if key.revoked_at else "-")
        for key in await ApiKey.all().order_by("name")
    ]
    _table(("NAME", "CREATED", "REVOKED"), rows)


async def apikey_revoke(settings: Settings, args: argparse.Namespace) -> None:
    key = await ApiKey.get_or_none(name=args.name)
    if key is None:
        raise CommandFailed(f"no API key named {args.name!r}")
    if key.revoked_at is not None:
        print(f"API key {args.name!r} was already revoked on {_when(key.revoked_at)}")
        return
    await ApiKey.filter(id=key.id, revoked_at__isnull=True).update(revoked_at=datetime.now(timezone.utc))
    print(f"revoked API key {args.name!r}")


# -- output -----------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
