"""The connect proxy from a real browser: a site's login cookie opens a Stagewire connection.

The worked example (docs/examples/backend.py) runs as the site, on its own
port; Stagewire (``python -m server``) asks it about every connect. The
browser logs in with the site's form, then the site's page opens a WebSocket
to Stagewire: the session cookie goes with the upgrade, and no token exists.
The same cookie also works from Stagewire's own origin with
``new Stagewire({cookies: true})`` (static/stagewire.js).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.pages import TIMEOUT_MS, require_browser
from tests.hooks.example import ExampleBackend
from tests.serverproc import ServerProcess, free_port


@pytest.fixture
async def site_and_stagewire(tmp_path):
    require_browser()
    port = free_port()
    site = await ExampleBackend(stagewire_ws=f"ws://127.0.0.1:{port}/ws").start()
    server = ServerProcess(tmp_path, {
        **site.stagewire_env(), "STAGEWIRE_SERVER__LOG_FORMAT": "text",
        "STAGEWIRE_HOOKS__RETRY_MIN_DELAY": "0.05", "STAGEWIRE_HOOKS__POLL_INTERVAL": "0.2",
    }, port=port)
    await server.start()
    try:
        yield site, server
    finally:
        await server.kill()
        await site.stop()


async def test_a_logged_in_browser_connects_with_its_cookie(browser, site_and_stagewire, page_errors):
    site, server = site_and_stagewire
    from playwright.async_api import expect

    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page_errors.watch(page, "site")
    await page.goto(site.url + "/")
    await page.fill("#username", "alice")
    await page.fill("#password", "wonderland")
    await page.click("#login")
    await expect(page.locator("#state")).to_have_text("connected")
    await expect(page.locator("#user")).to_have_text("Alice")
    await expect(page.locator("#log")).to_contain_text('rpc whoami: {"data":{"id":"alice","name":"Alice"}}')
    cookies = await context.cookies()
    assert [c["httpOnly"] for c in cookies if c["name"] == "session"] == [True]  # the page never saw it

    # The same session from Stagewire's own origin, with the browser client and no token.
    stagewire_page = await context.new_page()
    page_errors.watch(stagewire_page, "stagewire")
    await stagewire_page.goto(server.url + "/")
    result = await stagewire_page.evaluate("""async () => {
      const sw = await import("/static/stagewire.js");
      const client = new sw.Stagewire({ cookies: true });
      const pushes = [];
      client.on("push", (m) => pushes.push(m));
      const info = await client.connect();
      const whoami = await client.rpc("whoami");
      return { user: info.user, subscriptions: Object.keys(info.subscriptions), whoami, client: info.client };
    }""")
    assert result["user"]["name"] == "Alice" and result["user"]["roles"] == ["admin"]
    assert result["subscriptions"] == ["user:alice"] and result["whoami"] == {"id": "alice", "name": "Alice"}

    # The site heard about both connections through its webhook.
    for _ in range(100):
        if sum(e["name"] == "connect" and e["user"] == "alice" for e in site.events) >= 2:
            break
        await asyncio.sleep(0.05)
    connects = [e for e in site.events if e["name"] == "connect" and e["user"] == "alice"]
    assert result["client"] in {e["client"] for e in connects} and len(connects) == 2
    await context.close()


async def test_a_browser_without_a_session_is_refused(browser, site_and_stagewire, page_errors):
    site, server = site_and_stagewire
    context = await browser.new_context()
    page = await context.new_page()
    page_errors.watch(page, "stranger")
    await page.goto(server.url + "/")
    outcome = await page.evaluate("""async () => {
      const sw = await import("/static/stagewire.js");
      const client = new sw.Stagewire({ cookies: true });
      client.on("error", () => {});
      try { await client.connect(); return "connected"; }
      catch (e) { return [e.name, e.code, client.state]; }
    }""")
    assert outcome == ["DisconnectedError", 4501, "closed"]
    await context.close()
