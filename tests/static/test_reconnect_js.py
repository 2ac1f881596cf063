"""static/stagewire.js under Node: full-jitter backoff, and the ``reconnect_after`` hint of a stopping server.

Node 20 has a WebSocket behind ``--experimental-websocket`` (22 and later have
it by default); without node the tests skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = (ROOT / "static" / "stagewire.js").as_uri()

DRIVER = """
const sw = await import(process.argv[2]);
const [url, token] = [process.argv[3], process.argv[4]];
const out = (m) => process.stdout.write(JSON.stringify(m) + "\\n");
const samples = Array.from({ length: 2000 }, () => sw.backoffDelay(3, 500, 20000));
const capped = Array.from({ length: 200 }, () => sw.backoffDelay(50, 500, 20000));
out({ type: "backoff", min: Math.min(...samples), max: Math.max(...samples), cappedMax: Math.max(...capped),
      bad: [null, [1], [5, 2], ["a", 3], [-1, 4]].map(sw.hintedDelay), good: sw.hintedDelay([100, 200]) });
// Node 20's WebSocket fires no close event after a connection that failed to open;
// browsers always do, and the client waits for it before it retries.
class BrowserLikeWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    let opened = false, closed = false;
    this.addEventListener("open", () => { opened = true; });
    this.addEventListener("close", () => { closed = true; });
    this.addEventListener("error", () => setTimeout(() => {
      if (!opened && !closed && this.onclose) { closed = true; this.onclose({ code: 1006, reason: "" }); }
    }, 0));
  }
}
const client = new sw.Stagewire({ url, token, WebSocket: BrowserLikeWebSocket });
client.on("state", ({ state }) => out({ type: "state", state, nextRetryIn: client.nextRetryIn ?? null }));
client.on("disconnect", (d) => out({ type: "disconnect", ...d }));
await client.connect();
setTimeout(() => { out({ type: "timeout" }); process.exit(1); }, 30000);
"""


def node_with_websocket() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is needed for the JavaScript client tests")
    for flags in ([], ["--experimental-websocket"]):
        probe = subprocess.run([node, *flags, "-e", "if (typeof WebSocket !== 'function') process.exit(3)"],
                               capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [node, *flags]
    pytest.skip("this node has no WebSocket")


async def next_line(proc: asyncio.subprocess.Process, wanted: str, timeout: float = 20.0) -> dict:
    async def read() -> dict:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError("the node driver ended")
            message = json.loads(line)
            if message["type"] == wanted:
                return message

    return await asyncio.wait_for(read(), timeout)


async def test_backoff_is_full_jitter_and_a_stopping_server_spreads_the_reconnects(tmp_path):
    node = node_with_websocket()
    server = await ServerProcess(tmp_path, {"STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER": "1500,2000"}).start()
    script = tmp_path / "driver.mjs"
    script.write_text(DRIVER)
    proc = None
    try:
        await server.register("alice")
        token = await server.login("alice")
        proc = await asyncio.create_subprocess_exec(
            *node, str(script), LIBRARY, server.ws_url, token,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        backoff = await next_line(proc, "backoff")
        # Full jitter: anywhere in [0, 500 * 2^3], not only its upper half.
        assert 0 <= backoff["min"] < 400 and 3600 < backoff["max"] <= 4000
        assert backoff["cappedMax"] <= 20000
        assert backoff["bad"] == [None] * 5 and 100 <= backoff["good"] <= 200
        while (await next_line(proc, "state"))["state"] != "connected":
            pass

        await server.restart()  # SIGTERM: the disconnect push carries reconnect_after [1500, 2000]
        lost = await next_line(proc, "disconnect")
        assert lost["code"] == 4000 and lost["reconnect"] is True
        retrying = await next_line(proc, "state")
        assert retrying["state"] == "reconnecting" and 1500 <= retrying["nextRetryIn"] <= 2000
        while (await next_line(proc, "state"))["state"] != "connected":
            pass
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await server.stop()
