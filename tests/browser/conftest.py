"""Fixtures of the browser tests: headless Chromium (Debian's) driven by Playwright.

The tests need ``/usr/bin/chromium`` and the ``playwright`` package (``.ci/run``
installs Chromium; Playwright cannot download browsers here). Without them they
skip with the reason, or fail when ``STAGEWIRE_REQUIRE_SERVICES=1``.

Each test gets its own ``python -m server`` (see :mod:`tests.serverproc`),
which it may stop and start again on the same port. Its room and user
namespaces are made durable (``persist = true``) so that recovery after a
restart is exact; the rooms application itself does not need that.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

import pytest

from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS, DURABLE, TIMEOUT_MS, PageErrors, require_browser, start_server
from tests.serverproc import ServerProcess


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_browser()
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[ServerProcess]:
    """A server whose room channels are durable: a restart loses nothing."""
    require_browser()
    server = await start_server(tmp_path, **DURABLE)
    try:
        yield server
    finally:
        await server.kill()


@pytest.fixture
def page_errors() -> Iterator[PageErrors]:
    errors = PageErrors()
    yield errors
    assert not errors.errors, f"uncaught errors in the pages: {errors.errors}"
