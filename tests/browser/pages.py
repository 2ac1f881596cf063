"""Helpers for the browser tests: Chromium's launch options, a server, pages, logging in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess

CHROMIUM = Path(os.environ.get("STAGEWIRE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
#: Every wait on a page condition is bounded by this (milliseconds).
TIMEOUT_MS = 15_000
PASSWORD = "correct horse"
ADMIN = "root"

#: Durable room and user channels make recovery after a restart exact.
DURABLE = {
    "STAGEWIRE_NAMESPACES__ROOM__PERSIST": "true",
    "STAGEWIRE_NAMESPACES__USER__PERSIST": "true",
}


def require_browser() -> None:
    """Skip (or fail, with STAGEWIRE_REQUIRE_SERVICES=1) without Chromium or Playwright."""
    problem = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if problem is not None:
        if os.environ.get("STAGEWIRE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"browser tests cannot run: {problem} (STAGEWIRE_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(f"browser tests need Chromium and Playwright: {problem}")


async def start_server(directory: Path, **env: str) -> ServerProcess:
    """``python -m server`` with ``root`` as an admin, plus ``env`` overrides."""
    server = ServerProcess(directory, {
        "STAGEWIRE_AUTH__ADMINS": ADMIN,
        "STAGEWIRE_SERVER__LOG_FORMAT": "text",
        "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": "2",
        **env,
    })
    return await server.start()


class PageErrors:
    """Uncaught errors of the pages a test opened: there must be none."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any, name: str) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))


async def open_page(browser: Any, server: ServerProcess, page_errors: PageErrors, name: str,
                    path: str = "/", **context: Any) -> Any:
    """A page on ``path`` in a new browser context (its own storage: another person)."""
    ctx = await browser.new_context(**context)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = await ctx.new_page()
    page_errors.watch(page, name)
    await page.goto(server.url + path)
    return page


async def log_in(page: Any, username: str, password: str = PASSWORD) -> None:
    """Fill the demo's login form and wait until the chat is connected."""
    from playwright.async_api import expect

    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#auth-submit")
    await expect(page.locator("#conn-state")).to_have_text("connected")


async def chat_page(browser: Any, server: ServerProcess, page_errors: PageErrors, username: str,
                    **context: Any) -> Any:
    """A demo page where ``username`` (registered here) is logged in."""
    await server.register(username, PASSWORD)
    page = await open_page(browser, server, page_errors, username, **context)
    await log_in(page, username)
    return page


async def send(page: Any, text: str) -> None:
    await page.fill("#message-input", text)
    await page.press("#message-input", "Enter")


def message_bodies(page: Any) -> Any:
    return page.locator("#messages .message .body")
