"""pusher-js 8 (its browser build) in headless Chromium, signed by POST /pusher/auth for Stagewire users."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pusher
import pytest

from tests.browser.conftest import browser  # noqa: F401
from tests.browser.pages import PASSWORD, PageErrors, require_browser, start_server
from tests.npm import node_modules
from tests.pusher.helpers import APP_ID, KEY, SECRET

APPS = f'[{{id = "{APP_ID}", key = "{KEY}", secret = "{SECRET}", client_events = true}}]'

SETUP = """
async ([username, password, key]) => {
  await fetch("/api/auth/register", {method: "POST", body: JSON.stringify({username, password})});
  const login = await (await fetch("/api/auth/login", {method: "POST", body: JSON.stringify({username, password})})).json();
  const headers = {Authorization: "Bearer " + login.token};
  window.seen = [];
  const note = (kind, channel, event, data, extra) => window.seen.push({kind, channel, event, data, ...(extra || {})});
  const client = new Pusher(key, {
    cluster: "local", wsHost: location.hostname, wsPort: Number(location.port), forceTLS: false,
    enabledTransports: ["ws"], disableStats: true,
    channelAuthorization: {endpoint: "/pusher/auth", headers},
    userAuthentication: {endpoint: "/pusher/user-auth", headers},
  });
  client.connection.bind("state_change", (s) => note("state", null, s.current, null));
  client.user.bind_global((event, data) => note("user", null, event, data));
  window.watch = (name) => {
    const channel = client.subscribe(name);
    channel.bind_global((event, data) => {
      if (event === "pusher:subscription_succeeded" && data && data.members) data = {ids: Object.keys(data.members).sort()};
      note("channel", name, event, data);
    });
    channel.bind("client-hello", (data, meta) => note("client", name, "client-hello", data, {meta}));
  };
  window.client = client;
}
"""


async def seen(page, predicate: str, timeout: float = 15.0):
    await page.wait_for_function(f"window.seen.some(e => {predicate})", timeout=timeout * 1000)
    return await page.evaluate("window.seen")


def library(server) -> pusher.Pusher:
    parts = urlsplit(server.url)
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host=parts.hostname, port=parts.port, ssl=False)


async def test_pusher_js_in_a_browser(browser, tmp_path):  # noqa: F811
    require_browser()
    script = node_modules() / "pusher-js" / "dist" / "web" / "pusher.min.js"
    server = await start_server(tmp_path, STAGEWIRE_PUSHER__APPS=APPS)
    lib = library(server)
    errors = PageErrors()
    try:
        pages = {}
        for name in ("amy", "bob"):
            # The test drives the library from a script of its own on a JSON page; the pages'
            # Content-Security-Policy is tested in tests/security and by the demo's browser tests.
            page = await (await browser.new_context(bypass_csp=True)).new_page()
            errors.watch(page, name)
            await page.goto(server.url + "/healthz")
            await page.add_script_tag(path=str(script))
            await page.evaluate(SETUP, [name, PASSWORD, KEY])
            await seen(page, "e.kind === 'state' && e.event === 'connected'")
            pages[name] = page
        amy, bo = pages["amy"], pages["bob"]
        for channel in ("public-b", "private-b", "presence-b"):
            await amy.evaluate("(c) => window.watch(c)", channel)
            await seen(amy, f"e.channel === '{channel}' && e.event === 'pusher:subscription_succeeded'")
        await bo.evaluate("(c) => window.watch(c)", "presence-b")
        ok = await seen(bo, "e.channel === 'presence-b' && e.event === 'pusher:subscription_succeeded'")
        assert [e for e in ok if e["event"] == "pusher:subscription_succeeded"][0]["data"] == {"ids": ["amy", "bob"]}
        await seen(amy, "e.event === 'pusher:member_added' && e.data.id === 'bob'")

        await asyncio.to_thread(lib.trigger, ["public-b", "private-b"], "news", {"v": 1})
        for channel in ("public-b", "private-b"):
            await seen(amy, f"e.channel === '{channel}' && e.event === 'news' && e.data.v === 1")

        await bo.evaluate("window.client.channel('presence-b').trigger('client-hello', {from: 'bob'})")
        events = await seen(amy, "e.kind === 'client'")
        assert [e for e in events if e["kind"] == "client"][0]["meta"] == {"user_id": "bob"}

        # Cache channels, then sign-in and a message to one user.
        await asyncio.to_thread(lib.trigger, "cache-b", "price", {"p": 9})
        await amy.evaluate("(c) => window.watch(c)", "cache-b")
        await seen(amy, "e.channel === 'cache-b' && e.event === 'price' && e.data.p === 9")
        await amy.evaluate("window.client.signin()")
        for _ in range(50):  # until pusher-js has subscribed #server-to-user-amy by itself
            await asyncio.to_thread(lib.send_to_user, "amy", "note", {"for": "amy"})
            if await amy.evaluate("window.seen.some(e => e.kind === 'user' && e.event === 'note')"):
                break
            await asyncio.sleep(0.1)
        await seen(amy, "e.kind === 'user' && e.event === 'note'")

        # Restart: pusher-js reconnects and resubscribes by itself.
        await amy.evaluate("window.seen = []")
        await server.stop()
        await server.start()
        await seen(amy, "e.channel === 'private-b' && e.event === 'pusher:subscription_succeeded'", timeout=30)
        await asyncio.to_thread(lib.trigger, "private-b", "again", {"v": 2})
        await seen(amy, "e.channel === 'private-b' && e.event === 'again'")
    finally:
        await server.kill()
    assert not errors.errors, errors.errors
