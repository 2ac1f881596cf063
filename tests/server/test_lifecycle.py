"""The real process: ``python -m server`` and ``stagewire serve``, SIGTERM, readiness."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import connect_ws
from tests.serverproc import ROOT, ServerProcess, server_command, stagewire_script


@pytest.mark.parametrize("command", [
    server_command(),
    [str(stagewire_script()), "serve", "--config", str(ROOT / "config.toml")],
], ids=["python -m server", "stagewire serve"])
async def test_sigterm_tells_clients_to_reconnect_and_exits(tmp_path, command):
    if not Path(command[0]).exists():
        pytest.skip("the stagewire script is not installed in this environment")
    server = await ServerProcess(tmp_path, command=command).start()
    try:
        await server.register("alice")
        client = await connect_ws(server.ws_url)
        assert "result" in await client.call("connect", token=await server.login("alice"))
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        push, close_code = await client.recv_disconnect(timeout=5)
        assert push["code"] == close_code == 4000 and push["reconnect"] is True
        assert await server.wait(10) == 0
        assert time.monotonic() - started < 10
    finally:
        await server.kill()


async def test_a_restart_keeps_the_port_the_accounts_and_the_log(tmp_path):
    server = await ServerProcess(tmp_path).start()
    try:
        await server.register("alice")
        token = await server.login("alice")
        first = server.proc
        port = server.port
        await server.restart()
        assert server.proc is not first and first.returncode == 0
        assert server.port == port
        client = await connect_ws(server.ws_url)
        # Same database and token secret: the token of before the restart still works.
        assert "result" in await client.call("connect", token=token)
        await client.close()
        assert await server.stop() == 0
    finally:
        await server.kill()
    log = server.log_text()  # one file over both runs
    assert log.count(f"serving on http://127.0.0.1:{port} (pid {first.pid},") == 1
    assert log.count(f"serving on http://127.0.0.1:{port} (pid ") == 2
