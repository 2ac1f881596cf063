"""The ``stagewire`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Sequence

from server.config import ConfigError, Settings, load_settings

log = logging.getLogger("stagewire")


def _raise_open_files_limit() -> None:
    """Each connection is a file descriptor; the default soft limit (often 1024) is too low."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed
        pass


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app

    if args.host:
        settings = settings.replace(server={"host": args.host})
    if args.port:
        settings = settings.replace(server={"port": args.port})
    if settings.server.use_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # uvloop is optional (not on Windows)
            pass
    _raise_open_files_limit()
    host, port = settings.server.host, settings.server.port
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        shutdown_timeout=settings.server.shutdown_timeout,
        print=lambda _: log.info("serving on http://%s:%s (broker: %s, database: %s)", host, port,
                                 settings.broker.backend, settings.database.url.split("://", 1)[0]),
        access_log=None,
    )
    return 0


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
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--config", dest="config_sub", help="path to config.toml")
    migrate.set_defaults(func=_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*(argv or sys.argv[1:]), "serve"])
    try:
        settings = load_settings(getattr(args, "config_sub", None) or args.config)
    except (ConfigError, OSError) as exc:
        print(f"stagewire: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(args.func(settings, args))
