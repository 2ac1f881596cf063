"""A Redis of the test's own: ``redis-server`` on a free port, to kill, freeze and restart.

Fault tests must never touch the shared Redis on 6379. ``PrivateRedis`` runs
``redis-server`` in the test's directory with nothing on disk, so a restart
comes back empty, as a Redis restarted without persistence does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.services import REQUIRE_ENV

START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_redis_server() -> str:
    """The ``redis-server`` binary; skips (fails with STAGEWIRE_REQUIRE_SERVICES=1) without one."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed: the test runs a Redis of its own"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    return path


class PrivateRedis:
    """One ``redis-server`` process on ``127.0.0.1:<port>``."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start on {self.port}") from None
                await asyncio.sleep(0.02)

    async def kill(self) -> None:
        """SIGKILL: everything in it is lost, connections are reset."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as over a dead network."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def restart(self) -> None:
        """Kill, then start again on the same port, empty."""
        await self.kill()
        await self.start()

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.thaw()
            await self.kill()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis", require_redis_server())
    await redis.start()
    try:
        yield redis
    finally:
        await redis.close()
