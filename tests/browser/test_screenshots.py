"""Screenshots of the demo and the dashboard for the README: ``docs/img/*.png``.

Skipped unless ``STAGEWIRE_SCREENSHOTS=1``:

    STAGEWIRE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser/test_screenshots.py

The scene is made through the pages themselves, like the other browser tests;
a few scripted clients add traffic so that the dashboard's charts move.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser.pages import chat_page, message_bodies, send
from tests.browser.test_dashboard import dashboard_page
from tests.helpers import connect_ws

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PHONE = {"viewport": {"width": 390, "height": 720}, "is_mobile": True, "has_touch": True, "device_scale_factor": 1}

pytestmark = pytest.mark.skipif(os.environ.get("STAGEWIRE_SCREENSHOTS") != "1",
                                reason="writes docs/img: set STAGEWIRE_SCREENSHOTS=1 to refresh the screenshots")


async def chatter(server, seconds: float, stop: asyncio.Event) -> None:
    """Three scripted users talking on chat:lobby until ``stop``, for ``seconds`` at most."""
    clients = []
    for name in ("carol", "dave", "erin"):
        await server.register(name)
        client = await connect_ws(server.ws_url)
        assert "result" in await client.call("connect", token=await server.login(name))
        await client.call("subscribe", channel="chat:lobby")
        clients.append(client)
    # Read everything (a client that stops reading is, rightly, cut off as slow).
    readers = [asyncio.create_task(_drain(client)) for client in clients]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    n = 0
    while loop.time() < deadline and not stop.is_set():
        n += 1
        for client in clients[: 1 + n % 3]:
            await client.send("publish", channel="chat:lobby", data={"n": n})
        await asyncio.sleep(0.05 + 0.05 * (n % 5))
    for client in clients:
        await client.close()
    await asyncio.gather(*readers)


async def _drain(client) -> None:
    try:
        async for _ in client.ws:
            pass
    except Exception:  # closed
        pass


async def test_screenshots(browser, server, page_errors):
    DOCS_IMG.mkdir(exist_ok=True)
    desktop = {"viewport": {"width": 1100, "height": 640}, "device_scale_factor": 1}
    alice = await chat_page(browser, server, page_errors, "alice", **desktop)
    for name in ("design", "lobby"):
        await alice.fill("#room-name", name)
        await alice.click("#create-room button[type=submit]")
        await expect(alice.locator("#room-title")).to_have_text(f"# {name}")
    bob = await chat_page(browser, server, page_errors, "bob", **PHONE)
    await bob.click("#toggle-rooms")
    await bob.locator("#public-rooms li", has_text="lobby").get_by_role("button", name="Join").click()
    await expect(bob.locator("#room-title")).to_have_text("# lobby")
    await bob.click("#toggle-rooms")
    await bob.locator("#public-rooms li", has_text="design").get_by_role("button", name="Join").click()
    await bob.click("#toggle-rooms")
    await bob.locator("#rooms button.room", has_text="lobby").click()
    lines = [
        (alice, "Morning! The new build is on staging."),
        (bob, "Great, checking it from my phone now."),
        (alice, "Reconnects should be invisible: try turning wifi off and on."),
        (bob, "Done. It said reconnecting, then recovered, and nothing was lost."),
    ]
    for page, text in lines:
        await send(page, text)
        await expect(message_bodies(alice).last).to_have_text(text)
    await expect(message_bodies(bob)).to_have_count(len(lines))
    await bob.locator("#message-input").press_sequentially("Ship it", delay=30)
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await alice.screenshot(path=str(DOCS_IMG / "demo.png"))
    await bob.screenshot(path=str(DOCS_IMG / "demo-phone.png"))

    dashboard = await dashboard_page(browser, server, page_errors)
    await dashboard.set_viewport_size({"width": 1100, "height": 560})
    stop = asyncio.Event()
    traffic = asyncio.create_task(chatter(server, 60, stop))
    try:
        await expect(dashboard.locator("#total-connections")).to_have_text("6")
        # Let the charts fill for a while; the traffic task ends by itself.
        await asyncio.sleep(30)
        await dashboard.screenshot(path=str(DOCS_IMG / "dashboard.png"))
    finally:
        stop.set()
        await traffic
    for name in ("demo.png", "demo-phone.png", "dashboard.png"):
        assert (DOCS_IMG / name).stat().st_size < 400_000, f"{name} is too big for the repository"
