"""The operator dashboard, fed live by every node's ``ops:stats`` publications."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.pages import ADMIN, PASSWORD, chat_page, open_page


async def dashboard_page(browser, server, page_errors):
    await server.register(ADMIN, PASSWORD)
    page = await open_page(browser, server, page_errors, "dashboard", path="/dashboard")
    await page.fill("#username", ADMIN)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#conn-state")).to_have_text("connected")
    return page


async def test_connection_count_follows_pages_opening_and_closing(browser, server, page_errors):
    dashboard = await dashboard_page(browser, server, page_errors)
    total = dashboard.locator("#total-connections")
    await expect(total).to_have_text("1")  # the dashboard's own connection
    await expect(dashboard.locator("#nodes tbody tr")).to_have_count(1)
    await expect(dashboard.locator("#nodes tbody td.broker")).to_have_text("memory ok")

    alice = await chat_page(browser, server, page_errors, "alice")
    await expect(total).to_have_text("2")
    bob = await chat_page(browser, server, page_errors, "bob")
    await expect(total).to_have_text("3")
    await expect(dashboard.locator("#nodes tbody td.users")).to_have_text("3")

    await alice.context.close()
    await expect(total).to_have_text("2")
    await bob.context.close()
    await expect(total).to_have_text("1")


async def test_traffic_shows_up_as_rates(browser, server, page_errors):
    dashboard = await dashboard_page(browser, server, page_errors)
    alice = await chat_page(browser, server, page_errors, "alice")
    await alice.fill("#room-name", "busy")
    await alice.click("#create-room button[type=submit]")
    await expect(alice.locator("#room-title")).to_have_text("# busy")
    # Something happens every second: the rates cannot all read zero.
    await alice.evaluate("""() => { window.chatter = setInterval(() => {
        document.getElementById("message-input").value = "tick";
        document.getElementById("composer").requestSubmit(); }, 200); }""")
    await expect(dashboard.locator("#total-in")).not_to_have_text("0", timeout=5000)
    await expect(dashboard.locator("#total-deliveries")).not_to_have_text("0", timeout=5000)
    await alice.evaluate("clearInterval(window.chatter)")


async def test_only_admins_get_in(browser, server, page_errors):
    await server.register("mallory", PASSWORD)
    page = await open_page(browser, server, page_errors, "mallory", path="/dashboard")
    await page.fill("#username", "mallory")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("mallory is not an admin")
    await expect(page.locator("#board")).to_be_hidden()


async def test_a_row_per_node_of_a_redis_cluster(browser, tmp_path, page_errors):
    import secrets

    from tests.browser.pages import start_server
    from tests.services import require_redis

    redis_url = require_redis()
    shared = {
        "STAGEWIRE_BROKER__BACKEND": "redis",
        "STAGEWIRE_BROKER__REDIS_URL": redis_url,
        "STAGEWIRE_BROKER__PREFIX": f"sw-dash-{secrets.token_hex(4)}",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = await start_server(tmp_path / "a", **shared)
    second = None
    try:
        second = await start_server(tmp_path / "b", **shared)
        dashboard = await dashboard_page(browser, first, page_errors)
        rows = dashboard.locator("#nodes tbody tr")
        await expect(rows).to_have_count(2)
        await expect(dashboard.locator("#node-count")).to_have_text("2")
        await expect(dashboard.locator("#nodes tbody td.broker")).to_have_text(["redis ok", "redis ok"])
        # The second node's connections count in the total, and its row goes stale when it stops.
        await chat_page(browser, second, page_errors, "alice")
        await expect(dashboard.locator("#total-connections")).to_have_text("2")
        assert await second.stop() == 0
        await expect(dashboard.locator("#node-count")).to_have_text("1")
        await expect(dashboard.locator("#nodes tbody tr.stale")).to_have_count(1)
        await expect(dashboard.locator("#total-connections")).to_have_text("1")
    finally:
        if second is not None:
            await second.kill()
        await first.kill()
