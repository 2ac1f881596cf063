"""The real process: ``python -m server`` and ``stagewire serve``, SIGTERM, readiness."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import connect_ws

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server(tmp_path: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {
        **os.environ,
        "STAGEWIRE_SERVER__PORT": str(port),
        "STAGEWIRE_DATABASE__URL": f"sqlite://{tmp_path}/db.sqlite3",
        "STAGEWIRE_AUTH__SECRET_FILE": str(tmp_path / "secret"),
        "STAGEWIRE_AUTH__PASSWORD_TIME_COST": "1",
        "STAGEWIRE_AUTH__PASSWORD_MEMORY_COST": "1024",
    }
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return proc, url
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                err = (await proc.stderr.read()).decode() if proc.stderr else ""
                proc.kill()
                raise AssertionError(f"server did not become ready: {err[-2000:]}")
            await asyncio.sleep(0.1)


async def login(url: str, username: str) -> str:
    async with aiohttp.ClientSession() as http:
        body = {"username": username, "password": "correct horse"}
        async with http.post(f"{url}/api/auth/register", json=body) as r:
            assert r.status == 201
        async with http.post(f"{url}/api/auth/login", json=body) as r:
            return (await r.json())["token"]


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "server"],
    [str(Path(sys.executable).parent / "stagewire"), "serve", "--config", str(ROOT / "config.toml")],
])
async def test_sigterm_tells_clients_to_reconnect_and_exits(tmp_path, command):
    if not Path(command[0]).exists():
        pytest.skip("the stagewire script is not installed in this environment")
    proc, url = await start_server(tmp_path, *command)
    try:
        token = await login(url, "alice")
        client = await connect_ws(url.replace("http", "ws") + "/ws")
        assert "result" in await client.call("connect", token=token)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        push, close_code = await client.recv_disconnect(timeout=5)
        assert push["code"] == close_code == 4000 and push["reconnect"] is True
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
