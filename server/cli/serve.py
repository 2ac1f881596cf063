"""Running the server: one process, or ``--workers N`` processes sharing one port.

With several workers each process is a full node (its own hub and connections)
bound to the same port with SO_REUSEPORT, so the kernel spreads new
connections over them; they reach each other only through the Redis broker.
The memory broker cannot do that, so it refuses ``--workers`` above 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from typing import Sequence

from server.config import Settings
from server.ops.logs import configure_logging

log = logging.getLogger("stagewire")

WORKER_STOP_TIMEOUT = 15.0


class ServeError(Exception):
    """The server cannot start as asked."""


def raise_open_files_limit() -> None:
    """Each connection is a file descriptor; the default soft limit (often 1024) is too low."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed
        pass


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from ``[server] tls_cert`` and ``tls_key``; None to serve plain HTTP.

    TLS 1.2 at least, with Python's default (modern) ciphers.
    """
    if not settings.server.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.path(settings.server.tls_cert), settings.path(settings.server.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ServeError(f"cannot load the TLS certificate or key: {exc}") from exc
    return context


def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """Run one node until SIGTERM or SIGINT."""
    from aiohttp import web

    from server.app import create_app

    configure_logging(settings.server.log_format, connections=settings.server.connection_log)
    if settings.server.use_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # uvloop is optional (not on Windows)
            pass
    raise_open_files_limit()
    host, port = settings.server.host, settings.server.port
    tls = tls_context(settings)

    def started(_: str) -> None:
        log.info("serving on %s://%s:%s (pid %d, broker: %s, database: %s)", "https" if tls else "http",
                 host, port, os.getpid(), settings.broker.backend, settings.database.url.split("://", 1)[0])

    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        ssl_context=tls,
        shutdown_timeout=settings.server.shutdown_timeout,
        print=started,
        access_log=None,
    )


def serve_workers(settings: Settings, workers: int, worker_argv: Sequence[str]) -> int:
    """Start ``workers`` processes on one port and stop them together; returns an exit code."""
    if settings.broker.backend == "memory":
        raise ServeError(
            "--workers > 1 needs the redis broker: with the memory broker each worker would be "
            "an island (set [broker] backend = \"redis\" or STAGEWIRE_BROKER__BACKEND=redis)"
        )
    from models.db import close_db, init_db

    configure_logging(settings.server.log_format, connections=settings.server.connection_log)

    async def migrate() -> None:
        # Once here, so that the workers do not race to apply the same migration.
        await init_db(settings, migrate=True)
        await close_db()

    asyncio.run(migrate())
    command = [sys.executable, "-m", "server", *worker_argv]
    children = [subprocess.Popen(command) for _ in range(workers)]
    log.info("started %d workers: %s", workers, ", ".join(str(c.pid) for c in children))
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    if not stopping:
        log.error("a worker exited; stopping the others")
        stop(signal.SIGTERM, None)
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT
    codes = []
    for child in children:
        try:
            codes.append(child.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            child.kill()
            codes.append(child.wait())
    return 0 if stopping and all(c == 0 for c in codes) else 1
