"""Running the server: one process, or ``--workers N`` processes sharing one port.

With several workers each process is a full node (its own hub and connections)
bound to the same port with SO_REUSEPORT, so the kernel spreads new
connections over them; they reach each other only through the Redis broker.
The memory broker cannot do that, so it refuses ``--workers`` above 1.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Sequence

from server.config import Settings
from server.ops.logs import configure_logging

if TYPE_CHECKING:
    from aiohttp import web

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
    from server.app import create_app

    configure_logging(settings.server.log_format, connections=settings.server.connection_log)
    if settings.server.use_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # uvloop is optional (not on Windows)
            pass
    raise_open_files_limit()
    tls = tls_context(settings)
    asyncio.run(_run(create_app(settings), settings, tls, reuse_port))
    # The interpreter's own teardown collects every object once more, which took
    # about a second here; everything is closed by now, so let it skip that.
    gc.disable()
    gc.freeze()


#: Seconds aiohttp gives HTTP requests still running once the WebSockets are closed (then as
#: long again once cancelled). Requests run on while the connections drain, which has its own budget.
HANDLER_GRACE = 0.25
#: Seconds, past ``shutdown_timeout``, that the rest of the shutdown (cleanup contexts) may take.
CLEANUP_BUDGET = 0.9


async def _run(app: web.Application, settings: Settings, tls: ssl.SSLContext | None, reuse_port: bool) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within ``shutdown_timeout`` + 1 s.

    The shutdown: stop listening, tell every client to reconnect and give the
    peers ``shutdown_timeout`` to answer their close frames (:func:`drain`),
    then aiohttp's own (the cleanup contexts), with a bound on the whole:
    whatever a peer or a backend does, the process exits in time, and says
    what it had to cut short.
    """
    from aiohttp import web

    host, port = settings.server.host, settings.server.port
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=HANDLER_GRACE)
    await runner.setup()
    # What start-up made (modules, settings, schemas, the node's tables) lives as
    # long as the process. Frozen, it is out of the cycle collector's sight: each
    # full collection scans what connections made, not the whole heap again.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_port=reuse_port or None)
        await site.start()
        log.info("serving on %s://%s:%s (pid %d, broker: %s, database: %s)", "https" if tls else "http",
                 host, port, os.getpid(), settings.broker.backend, settings.database.url.split("://", 1)[0])
        await stop.wait()
    finally:
        budget = settings.server.shutdown_timeout + CLEANUP_BUDGET
        started = time.monotonic()
        # What the process holds now lives until it exits: keep the collector from
        # walking it again. With 10,000 connections each full collection walked
        # some 300 MB, and closing them made enough new objects to run several.
        gc.freeze()
        try:
            await asyncio.wait_for(_stop(runner, app), budget)
        except asyncio.TimeoutError:
            log.error("shutdown cut short after %.1f s (shutdown_timeout %.1f s)",
                      time.monotonic() - started, settings.server.shutdown_timeout)
        else:
            log.info("stopped in %.2f s", time.monotonic() - started)


async def _stop(runner: web.AppRunner, app: web.Application) -> None:
    """Stop listening, drain the connections, then run aiohttp's cleanup."""
    from server.app import close_websockets

    for site in list(runner.sites):
        await site.stop()
    # Before aiohttp's cleanup: from its first step on, its connections ignore
    # what peers send, their close frames included. Its on_shutdown runs the
    # same drain again for an app run some other way; here it finds nothing left.
    await close_websockets(app)
    await runner.cleanup()


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
