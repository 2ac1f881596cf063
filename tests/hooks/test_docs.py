"""docs/hooks.md stays true: its snippets are the tested example files, and it names every event and setting."""

from __future__ import annotations

import dataclasses
import re

from server import config
from tests.hooks.receiver import EXAMPLES, ROOT

DOC = (ROOT / "docs" / "hooks.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def test_the_verification_snippets_are_the_tested_files():
    [python] = blocks("python")
    assert python in (EXAMPLES / "verify_webhook.py").read_text()
    [js] = blocks("js")[:1]
    assert js in (EXAMPLES / "verify_webhook.mjs").read_text()
    assert "X-Stagewire-Signature" in DOC and "compare_digest" in python and "timingSafeEqual" in js


def test_every_event_and_setting_is_described():
    table = DOC[DOC.index("### Events"):DOC.index("### Delivery")]
    for name in config.WEBHOOK_EVENTS:
        assert f"| `{name}` |" in table, name
    for cls in (config.HooksSettings, config.ProxySettings, config.WebhookSettings):
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in DOC or f"{field.name} =" in DOC, (cls.__name__, field.name)
