"""Fixtures of the hooks tests: a webhook receiver, and settings that send to it."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from server.config import WEBHOOK_EVENTS, Settings
from tests.conftest import make_settings
from tests.hooks.receiver import Receiver

SECRET = "webhook-test-secret"
#: Fast enough for tests: vacated/removed after 0.3 s, retries from 50 ms to 0.5 s.
FAST = {"grace": 0.3, "retry_min_delay": 0.05, "retry_max_delay": 0.5, "poll_interval": 0.2, "timeout": 2.0}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver(SECRET).start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def hook_settings(tmp_path: Any, url: str, *, events: tuple[str, ...] = WEBHOOK_EVENTS,
                  channels: tuple[str, ...] = (), hooks: dict[str, Any] | None = None,
                  more: list[dict[str, Any]] | None = None, **sections: Any) -> Settings:
    """Test settings with one webhook to ``url`` (plus ``more``) and fast ``[hooks]``.

    The ops:stats feed is off: its publications would be events too.
    """
    sections.setdefault("server", {"stats_interval": 0})
    webhook = {"url": url, "events": list(events), "channels": list(channels), "secret": SECRET, "name": "test"}
    return make_settings(tmp_path, **sections).replace(
        webhooks=[webhook, *(more or [])], hooks={**FAST, **(hooks or {})})
