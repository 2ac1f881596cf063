"""The ``stagewire`` command line.

    serve     run the server                                server/cli/serve.py
    migrate   apply database migrations                     here
    user      create | list | set-role, on the database     server/cli/admin.py
    apikey    create | list | revoke, on the database       server/cli/admin.py
    webhooks  list | retry: the outbox's dead letters       server/cli/webhooks.py
    publish   publish through the server HTTP API           server/cli/client.py
    tail      print a channel's live publications           server/cli/client.py
    bench     run a load scenario from bench/               server/cli/bench.py

Each module adds its subcommands with ``add_commands(subparsers)``; a command
is a ``func(settings, args) -> exit status``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Sequence

from server.cli import admin as cli_admin
from server.cli import bench as cli_bench
from server.cli import client as cli_client
from server.cli import webhooks as cli_webhooks
from handlers import REGISTRY
from server.config import ConfigError, Settings, load_settings

log = logging.getLogger("stagewire")

#: Modules adding the subcommands after serve and migrate, in --help order.
COMMAND_MODULES = (cli_admin, cli_webhooks, cli_client, cli_bench)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from server.cli.serve import ServeError, serve, serve_workers

    if args.host:
        settings = settings.replace(server={"host": args.host})
    if args.port:
        settings = settings.replace(server={"port": args.port})
    workers = args.workers if args.workers is not None else settings.server.workers
    if args.worker or workers <= 1:
        try:
            serve(settings, reuse_port=args.worker)
        except ServeError as exc:
            print(f"stagewire: {exc}", file=sys.stderr)
            return 2
        return 0
    worker_argv = ["serve", "--worker"]
    config = getattr(args, "config_sub", None) or args.config
    if config:
        worker_argv += ["--config", config]
    worker_argv += ["--host", settings.server.host, "--port", str(settings.server.port)]
    try:
        return serve_workers(settings, workers, worker_argv)
    except ServeError as exc:
        print(f"stagewire: {exc}", file=sys.stderr)
        return 2


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from models.db import close_db, init_db

    async def run() -> None:
        await init_db(settings, migrate=True)
        await close_db()

    asyncio.run(run())
    log.info("database is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stagewire", description="Stagewire real-time server")
    parser.add_argument("--config", help="path to config.toml (default: ./config.toml or $STAGEWIRE_CONFIG)")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", dest="config_sub", help="path to config.toml")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="processes sharing the port (needs the redis broker)")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--config", dest="config_sub", help="path to config.toml")
    migrate.set_defaults(func=_migrate)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*(argv or sys.argv[1:]), "serve"])
    try:
        settings = load_settings(getattr(args, "config_sub", None) or args.config, sections=REGISTRY.sections)
    except (ConfigError, OSError) as exc:
        print(f"stagewire: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        status = args.func(settings, args)
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # a command line prints one line, never a traceback
        print(f"stagewire: {describe_failure(exc, settings)}", file=sys.stderr)
        log.debug("command failed", exc_info=True)
        status = 1
    sys.exit(status)


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """One line saying what went wrong, for errors a user can cause and fix."""
    scheme = settings.database.url.split("://", 1)[0]
    name = type(exc).__name__
    if name == "ConfigurationError" and "scheme" in str(exc):
        return (f"unsupported database URL scheme {scheme!r}: use sqlite://, postgres:// or mysql:// "
                "(MongoDB is not supported)")
    if name in ("DBConnectionError", "OperationalError") or type(exc).__module__.split(".")[0] in (
        "asyncpg", "asyncmy", "aiosqlite", "sqlite3"
    ):
        return f"cannot use the {scheme} database: {exc}"
    if isinstance(exc, OSError) and exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
        return f"cannot listen: the address is in use ({exc.strerror}; is another server running?)"
    if isinstance(exc, EOFError):
        return "no input: give the password on standard input with --password-stdin"
    return f"{name}: {exc}"
