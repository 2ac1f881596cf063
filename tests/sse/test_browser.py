"""A real EventSource in headless Chromium: the cookie session, live events, recovery after a restart."""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.conftest import browser  # noqa: F401
from tests.browser.pages import PASSWORD, PageErrors, require_browser, start_server

API_KEY = "sse-browser-key"
CHANNEL = "log:feed"  # a persist namespace: its history survives the restart

PAGE = """
async ([username, password, channel]) => {
  await fetch("/api/auth/register", {method: "POST", body: JSON.stringify({username, password})});
  const login = await (await fetch("/api/auth/login", {method: "POST", body: JSON.stringify({username, password})})).json();
  const r = await fetch("/api/sse/ticket", {method: "POST", headers: {Authorization: "Bearer " + login.token},
                                             body: JSON.stringify({cookie: true})});
  if (!r.ok) throw new Error("ticket " + r.status);
  window.seen = [];
  const source = new EventSource("/sse?channel=" + encodeURIComponent(channel));
  for (const name of ["subscribed", "pub", "reload", "disconnect"]) {
    source.addEventListener(name, (e) => window.seen.push({event: name, data: JSON.parse(e.data), id: e.lastEventId}));
  }
  window.source = source;
}
"""


async def publish(server, data) -> None:
    async with __import__("aiohttp").ClientSession() as http:
        async with http.post(f"{server.url}/api/publish", json={"channel": CHANNEL, "data": data},
                             headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            assert r.status == 200, await r.text()


async def seen(page, predicate: str, timeout: float = 15.0):
    await page.wait_for_function(f"window.seen && window.seen.filter(e => {predicate}).length > 0",
                                 timeout=timeout * 1000)
    return await page.evaluate("window.seen")


async def test_event_source_recovers_what_it_missed_while_the_server_restarted(browser, tmp_path):  # noqa: F811
    require_browser()
    server = await start_server(tmp_path, STAGEWIRE_API__KEYS=API_KEY)
    errors = PageErrors()
    try:
        # The test drives the library from a script of its own on a JSON page; the pages'
        # Content-Security-Policy is tested in tests/security and by the demo's browser tests.
        page = await (await browser.new_context(bypass_csp=True)).new_page()
        errors.watch(page, "sse")
        await page.goto(server.url + "/healthz")
        await page.evaluate(PAGE, ["watcher", PASSWORD, CHANNEL])
        await seen(page, "e.event === 'subscribed'")
        await publish(server, {"n": 1})
        await seen(page, "e.event === 'pub' && e.data.data.n === 1")

        # Hold the browser's reconnect until the server is back and has published more.
        gate = asyncio.Event()

        async def hold(route):
            await gate.wait()
            await route.continue_()

        await page.route("**/sse?*", hold)
        await server.stop()
        await seen(page, "e.event === 'disconnect'")
        await server.start()
        await publish(server, {"n": 2})
        await publish(server, {"n": 3})
        gate.set()
        events = await seen(page, "e.event === 'pub' && e.data.data.n === 3")
        after = events[[e["event"] for e in events].index("disconnect") + 1:]
        assert after[0]["event"] == "subscribed" and after[0]["data"]["channels"][CHANNEL]["recovered"] is True
        assert [e["data"]["data"]["n"] for e in after if e["event"] == "pub"] == [2, 3]
        assert not [e for e in events if e["event"] == "reload"]
        await publish(server, {"n": 4})  # and live again
        events = await seen(page, "e.event === 'pub' && e.data.data.n === 4")
        assert [e["data"]["data"]["n"] for e in events if e["event"] == "pub"] == [1, 2, 3, 4]
    finally:
        await server.kill()
    assert not errors.errors, errors.errors
