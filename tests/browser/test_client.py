"""static/stagewire.js on its own in the browser: both encodings, replies, errors, recovery."""

from __future__ import annotations

import pytest

from tests.browser.pages import PASSWORD, open_page, start_server
from tests.private_redis import private_redis  # noqa: F401

SCRIPT = """async ([encoding, password]) => {
  const sw = await import("/static/stagewire.js");
  const { token } = await sw.login("alice", password);
  const client = new sw.Stagewire({ token, encoding });
  const got = [];
  const sub = client.subscribe("chat:browser-" + encoding, { onPublication: (p) => got.push(p.data) });
  await client.connect();
  await sub.ready;
  // Three publishes in one tick leave in one frame; replies come back in order.
  const offsets = (await Promise.all([1, 2, 3].map((n) => client.publish(sub.channel, { n })))).map((r) => r.offset);
  while (got.length < 3) await new Promise((r) => setTimeout(r, 20));
  let refused = null;
  try { await client.call("subscribe", { channel: "ops:stats" }); } catch (e) { refused = [e.name, e.code]; }
  const history = await client.history(sub.channel, { limit: 10 });
  client.disconnect();
  let afterClose = null;
  try { await client.ping(); } catch (e) { afterClose = [e.name, e.code]; }
  return { offsets, got, refused, history: history.publications.length, afterClose, state: client.state };
}"""


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_library_round_trip(browser, server, page_errors, encoding):
    await server.register("alice", PASSWORD)
    page = await open_page(browser, server, page_errors, "library")
    result = await page.evaluate(SCRIPT, [encoding, PASSWORD])
    assert result["offsets"] == [1, 2, 3]
    assert result["got"] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert result["refused"] == ["StagewireError", 103]
    assert result["history"] == 3
    assert result["afterClose"] == ["DisconnectedError", 1000]
    assert result["state"] == "closed"


async def test_final_close_codes_stop_reconnecting(browser, server, page_errors):
    await server.register("alice", PASSWORD)
    page = await open_page(browser, server, page_errors, "library")
    result = await page.evaluate("""async (password) => {
      const sw = await import("/static/stagewire.js");
      const { token } = await sw.login("alice", password);
      const client = new sw.Stagewire({ token });
      const events = [];
      client.on("state", ({ state }) => events.push(state));
      const closed = new Promise((resolve) => client.on("disconnect", resolve));
      await client.connect();
      await sw.logout(token);   // the session is revoked: 4503, final
      const info = await closed;
      return { info, events, codes: [4000, 4003, 4499, 1001, 1006, 4500, 4503, 1000, 1009].map(sw.shouldReconnect) };
    }""", PASSWORD)
    assert result["info"]["code"] == 4503 and result["info"]["reconnect"] is False
    assert result["events"] == ["connecting", "connected", "closed"]
    assert result["codes"] == [True, True, True, True, True, False, False, False, False]


async def test_token_is_refreshed_before_it_expires(browser, tmp_path, page_errors):
    from tests.browser.pages import start_server

    server = await start_server(tmp_path, STAGEWIRE_AUTH__TOKEN_TTL="4")
    try:
        await server.register("alice", PASSWORD)
        page = await open_page(browser, server, page_errors, "library")
        result = await page.evaluate("""async (password) => {
          const sw = await import("/static/stagewire.js");
          const { token, expires_in } = await sw.login("alice", password);
          const client = new sw.Stagewire({ token });
          const drops = [];
          client.on("disconnect", (d) => drops.push(d.code));
          const refreshed = new Promise((resolve) => client.on("token", resolve));
          await client.connect();
          const fresh = await refreshed;            // at 80% of the token's life
          // Past the first token's expiry the connection must still be the same one.
          await new Promise((r) => setTimeout(r, expires_in * 1000 + 500));
          await client.ping();
          return { changed: fresh !== token, drops, state: client.state, expires_in };
        }""", PASSWORD)
        assert result["expires_in"] <= 4
        assert result["changed"] and result["drops"] == [] and result["state"] == "connected"
    finally:
        await server.kill()


async def test_a_resubscribe_push_resubscribes_with_recover(browser, tmp_path, page_errors, private_redis):
    server = await start_server(tmp_path, STAGEWIRE_BROKER__BACKEND="redis",
                                STAGEWIRE_BROKER__REDIS_URL=private_redis.url,
                                STAGEWIRE_BROKER__RECONNECT_MAX_DELAY="0.3")
    try:
        await server.register("alice", PASSWORD)
        page = await open_page(browser, server, page_errors, "library")
        await page.evaluate("""async (password) => {
          const sw = await import("/static/stagewire.js");
          const { token } = await sw.login("alice", password);
          const client = new sw.Stagewire({ token });
          window.seen = { got: [], recoveries: [], unsubscribed: [] };
          window.sub = client.subscribe("chat:reset", {
            onPublication: (p) => window.seen.got.push(p.data),
            onRecovery: (recovered) => window.seen.recoveries.push(recovered),
            onUnsubscribed: (e) => window.seen.unsubscribed.push(e.code),
          });
          window.client = client;
          await client.connect();
          await window.sub.ready;
          await client.publish("chat:reset", "before");
          while (window.seen.got.length < 1) await new Promise((r) => setTimeout(r, 20));
        }""", PASSWORD)
        await private_redis.restart()  # back empty: the channel's stream and epoch are gone
        result = await page.evaluate("""async () => {
          while (window.seen.recoveries.length < 1) await new Promise((r) => setTimeout(r, 20));
          await window.client.publish("chat:reset", "after");
          while (window.seen.got.length < 2) await new Promise((r) => setTimeout(r, 20));
          return { ...window.seen, state: window.client.state, closed: window.sub.closed };
        }""")
        assert result == {"got": ["before", "after"], "recoveries": [False], "unsubscribed": [],
                          "state": "connected", "closed": False}
    finally:
        await server.kill()
