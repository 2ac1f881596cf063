"""A server restart in the middle of a chat: the page says so, then recovers what it missed."""

from __future__ import annotations


from playwright.async_api import expect

from tests.browser.pages import chat_page, message_bodies, send, start_server


async def _room_with(browser, server, page_errors):
    alice = await chat_page(browser, server, page_errors, "alice")
    await alice.fill("#room-name", "ops")
    await alice.click("#create-room button[type=submit]")
    await expect(alice.locator("#room-title")).to_have_text("# ops")
    bob = await chat_page(browser, server, page_errors, "bob")
    await bob.locator("#public-rooms li", has_text="ops").get_by_role("button", name="Join").click()
    await expect(bob.locator("#room-title")).to_have_text("# ops")
    await send(bob, "before the restart")
    await expect(message_bodies(alice)).to_have_text(["before the restart"])
    return alice, bob


async def _restart_while_alice_is_away(server, alice, bob, *during):
    """Stop the server; start it again; bob sends ``during`` before alice's page may come back."""
    assert await server.stop() == 0
    await expect(alice.locator("#conn-state")).to_have_text("reconnecting…")
    await expect(bob.locator("#conn-state")).to_have_text("reconnecting…")
    # Alice's browser cannot open connections until we let it: whatever bob
    # sends after the restart is, for her, something to recover. (Offline
    # emulation also hides traffic on open sockets, hence after the stop.)
    await alice.context.set_offline(True)
    await server.start()
    await expect(bob.locator("#conn-state")).not_to_have_text("reconnecting…")
    for text in during:
        await send(bob, text)
    await expect(message_bodies(bob)).to_have_text(["before the restart", *during])
    await expect(alice.locator("#conn-state")).to_have_text("reconnecting…")
    await alice.context.set_offline(False)
    # A real browser fires "online" when the network comes back; the emulation may
    # not. The client then retries at once instead of at the end of its backoff step.
    await alice.evaluate("window.dispatchEvent(new Event('online'))")


async def test_restart_then_exact_recovery(browser, server, page_errors):
    alice, bob = await _room_with(browser, server, page_errors)
    await _restart_while_alice_is_away(server, alice, bob, "while you were away", "and one more")
    await expect(alice.locator("#conn-state")).to_have_text("recovered")
    await expect(message_bodies(alice)).to_have_text(["before the restart", "while you were away", "and one more"])
    # And the chat goes on live, in both directions.
    await send(alice, "I am back")
    await expect(message_bodies(bob)).to_have_text(
        ["before the restart", "while you were away", "and one more", "I am back"])
    await expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])


async def test_restart_without_durable_channels_reloads_from_the_database(browser, tmp_path, page_errors):
    # The default setup: the memory broker forgets channel streams on restart,
    # so recovery reports recovered=false and the page reloads from messages.list.
    server = await start_server(tmp_path)
    try:
        alice, bob = await _room_with(browser, server, page_errors)
        await _restart_while_alice_is_away(server, alice, bob, "sent during the outage")
        await expect(alice.locator("#conn-state")).to_have_text("reloaded")
        await expect(message_bodies(alice)).to_have_text(["before the restart", "sent during the outage"])
        await send(bob, "live again")
        await expect(message_bodies(alice)).to_have_text(["before the restart", "sent during the outage", "live again"])
    finally:
        await server.kill()
