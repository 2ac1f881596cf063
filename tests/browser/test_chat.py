"""The demo chat at ``/`` in a real browser: accounts, rooms, live messages, typing, presence."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.pages import PASSWORD, chat_page, log_in, message_bodies, open_page, send

PHONE = {"viewport": {"width": 390, "height": 760}, "is_mobile": True, "has_touch": True}


async def test_two_people_chat_in_a_room(browser, server, page_errors):
    alice = await chat_page(browser, server, page_errors, "alice")
    await alice.fill("#room-name", "lobby")
    await alice.click("#create-room button[type=submit]")
    await expect(alice.locator("#room-title")).to_have_text("# lobby")

    # Bob is on a phone: the room list is a drawer there.
    bob = await chat_page(browser, server, page_errors, "bob", **PHONE)
    await expect(bob.locator("#rooms-panel")).not_to_be_in_viewport()
    await bob.click("#toggle-rooms")
    await bob.locator("#public-rooms li", has_text="lobby").get_by_role("button", name="Join").click()
    await expect(bob.locator("#room-title")).to_have_text("# lobby")
    await expect(bob.locator("#composer")).to_be_in_viewport()
    await expect(alice.locator("#messages")).to_contain_text("bob joined the room")

    await send(alice, "hello bob")
    await expect(message_bodies(bob)).to_have_text(["hello bob"])

    await bob.locator("#message-input").press_sequentially("hi alice", delay=20)
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await bob.press("#message-input", "Enter")
    await expect(message_bodies(alice)).to_have_text(["hello bob", "hi alice"])
    await expect(alice.locator("#typing")).to_have_text("")  # a message ends the notice

    await expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])
    await expect(bob.locator("#online-list")).to_have_text("alice, bob")
    await bob.context.close()
    await expect(alice.locator("#presence li")).to_have_text(["alice"])


async def test_unread_count_of_a_room_not_open(browser, server, page_errors):
    alice = await chat_page(browser, server, page_errors, "alice")
    for name in ("general", "random"):
        await alice.fill("#room-name", name)
        await alice.click("#create-room button[type=submit]")
        await expect(alice.locator("#room-title")).to_have_text(f"# {name}")
    bob = await chat_page(browser, server, page_errors, "bob")
    for name in ("general", "random"):
        await bob.locator("#public-rooms li", has_text=name).get_by_role("button", name="Join").click()
        await expect(bob.locator("#room-title")).to_have_text(f"# {name}")
    await send(bob, "in random")
    await send(bob, "still random")
    general = alice.locator("#rooms button.room", has_text="general")
    random_ = alice.locator("#rooms button.room", has_text="random")
    await expect(message_bodies(alice)).to_have_text(["in random", "still random"])
    await general.click()
    await bob.locator("#rooms button.room", has_text="general").click()
    await send(bob, "over here")
    await expect(message_bodies(alice)).to_have_text(["over here"])
    await random_.click()
    await bob.locator("#rooms button.room", has_text="random").click()
    await send(bob, "back in random")
    await expect(general.locator(".unread")).to_have_count(0)
    await expect(message_bodies(alice)).to_have_text(["in random", "still random", "back in random"])
    await bob.locator("#rooms button.room", has_text="general").click()
    await send(bob, "psst")
    await expect(general.locator(".unread")).to_have_text("1")


async def test_account_forms_explain_what_is_wrong(browser, server, page_errors):
    page = await open_page(browser, server, page_errors, "visitor")
    await page.click("#tab-register")
    await page.fill("#username", "x")
    await page.fill("#password", "short")
    await page.click("#auth-submit")
    await expect(page.locator("#username-error")).to_contain_text("3 to 32 characters")
    await expect(page.locator("#password-error")).to_have_text("8 to 256 characters")
    await expect(page.locator("#username")).to_have_attribute("aria-invalid", "true")

    await server.register("taken", PASSWORD)
    await page.fill("#username", "taken")
    await page.fill("#password", PASSWORD)
    await page.click("#auth-submit")
    await expect(page.locator("#username-error")).to_have_text("this name is taken")

    await page.click("#tab-login")
    await page.fill("#username", "taken")
    await page.fill("#password", "not the password")
    await page.click("#auth-submit")
    await expect(page.locator("#auth-error")).to_have_text("Wrong username or password")
    await expect(page.locator("#conn-state")).to_have_text("offline")

    await page.click("#tab-register")
    await page.fill("#username", "newcomer")
    await page.fill("#password", PASSWORD)
    await page.click("#auth-submit")
    await expect(page.locator("#conn-state")).to_have_text("connected")
    await expect(page.locator("#no-rooms")).to_be_visible()

    # A reload keeps the session (sessionStorage) and reconnects.
    await page.reload()
    await expect(page.locator("#conn-state")).to_have_text("connected")
    await page.click("#logout")
    await expect(page.locator("#auth-form")).to_be_visible()
    await log_in(page, "newcomer")
