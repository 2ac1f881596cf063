"""Real server processes for tests: ``python -m server`` on a free port, stoppable and restartable.

Each process gets the environment overrides of a test (SQLite and the secret
file in the test's directory, cheap password hashing) plus its own, writes its
log to a file, and can be stopped with SIGTERM and started again on the same
port with the same database, as a restart in production would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Mapping

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One ``python -m server`` on ``127.0.0.1:<port>``; ``log`` collects its stderr over restarts."""

    def __init__(self, directory: Path, env: Mapping[str, str] | None = None, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.log = directory / "server.log"
        self.env = {
            **os.environ,
            "STAGEWIRE_SERVER__HOST": "127.0.0.1",
            "STAGEWIRE_SERVER__PORT": str(self.port),
            "STAGEWIRE_SERVER__USE_UVLOOP": "false",
            "STAGEWIRE_DATABASE__URL": f"sqlite://{directory}/db.sqlite3",
            "STAGEWIRE_AUTH__SECRET_FILE": str(directory / "secret"),
            "STAGEWIRE_AUTH__PASSWORD_TIME_COST": "1",
            "STAGEWIRE_AUTH__PASSWORD_MEMORY_COST": "1024",
            **(env or {}),
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "ServerProcess":
        # Another process on the port would answer our readiness probe instead.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise AssertionError(f"port {self.port} is taken: {exc}") from None
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", cwd=ROOT, env=self.env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.url}/readyz") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientConnectionError:
                    pass
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    await self.kill()
                    raise AssertionError(f"server did not become ready:\n{self.log_text()[-3000:]}")
                await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (clients are told to reconnect) and wait for the exit status."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else 0
        proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            raise AssertionError("server did not stop after SIGTERM") from None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def register(self, username: str, password: str = "correct horse") -> None:
        async with aiohttp.ClientSession() as http:
            body = {"username": username, "password": password}
            async with http.post(f"{self.url}/api/auth/register", json=body) as r:
                assert r.status in (201, 409), await r.text()

    async def login(self, username: str, password: str = "correct horse") -> str:
        async with aiohttp.ClientSession() as http:
            body = {"username": username, "password": password}
            async with http.post(f"{self.url}/api/auth/login", json=body) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["token"]
