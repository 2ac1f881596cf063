"""``[[webhooks]]``, ``[hooks]`` and ``[proxy]``: read from config.toml and the environment, checked."""

from __future__ import annotations

import pytest

from server.config import ConfigError, load_settings

TOML = """
[[webhooks]]
url = "https://a.example.com/hooks"
events = ["connect", "channel_vacated"]
secret = "from-the-file"

[[webhooks]]
name = "analytics"
url = "https://b.example.com/in"
events = ["publish"]
channels = ["chat", "room:*"]
secret = "s2"

[hooks]
grace = 1.5

[namespaces.chat]
subscribe_proxy = "http://127.0.0.1:9000/sub"
publish_proxy = "off"
"""


def load(tmp_path, text: str = TOML, **env: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path, environ=env)


def test_webhooks_are_an_array_of_tables_reachable_by_position_from_the_environment(tmp_path):
    settings = load(tmp_path, STAGEWIRE_WEBHOOKS__0__SECRET="from-env", STAGEWIRE_WEBHOOKS__1__EVENTS="publish,connect")
    first, second = settings.webhooks
    assert (first.name, first.url, first.events, first.secret) == (
        "https://a.example.com/hooks", "https://a.example.com/hooks", ("connect", "channel_vacated"), "from-env")
    assert (second.name, second.channels, second.events) == ("analytics", ("chat", "room:*"), ("publish", "connect"))
    assert settings.hooks.grace == 1.5 and settings.hooks.max_attempts == 10
    chat = settings.namespaces["chat"]
    assert (chat.subscribe_proxy, chat.publish_proxy) == ("http://127.0.0.1:9000/sub", "off")


def test_a_webhook_from_the_environment_alone(tmp_path):
    settings = load(tmp_path, "", STAGEWIRE_WEBHOOKS__0__URL="http://127.0.0.1:9000/h",
                    STAGEWIRE_WEBHOOKS__0__EVENTS="member_added", STAGEWIRE_WEBHOOKS__0__SECRET="x",
                    STAGEWIRE_PROXY__CONNECT="http://127.0.0.1:9000/connect", STAGEWIRE_PROXY__TOKENS="false")
    assert [(h.url, h.events) for h in settings.webhooks] == [("http://127.0.0.1:9000/h", ("member_added",))]
    assert settings.proxy.connect == "http://127.0.0.1:9000/connect" and settings.proxy.tokens is False


@pytest.mark.parametrize("text,env,message", [
    (TOML, {"STAGEWIRE_WEBHOOKS__0__EVENTS": "connect,explode"}, r"unknown \['explode'\]"),
    (TOML, {"STAGEWIRE_WEBHOOKS__0__SECRET": ""}, "secret is required"),
    (TOML, {"STAGEWIRE_WEBHOOKS__1__URL": "ftp://x/y"}, "http:// or https://"),
    (TOML, {"STAGEWIRE_WEBHOOKS__1__NAME": "https://a.example.com/hooks"}, "same name"),
    (TOML, {"STAGEWIRE_WEBHOOKS__5__URL": "http://x.example/"}, "not a position"),
    (TOML, {"STAGEWIRE_WEBHOOKS__0__COLOUR": "red"}, "unknown setting webhooks.0.colour"),
    (TOML, {"STAGEWIRE_HOOKS__RETRY_MIN_DELAY": "0"}, "retry_min_delay"),
    (TOML, {"STAGEWIRE_NAMESPACES__CHAT__PUBLISH_PROXY": "sometimes"}, "publish_proxy"),
    ("", {"STAGEWIRE_PROXY__TOKENS": "false"}, "needs a connect proxy"),
    ("", {"STAGEWIRE_WEBHOOKS__X__URL": "http://x.example/"}, "by position"),
])
def test_bad_hook_settings_are_reported(tmp_path, text, env, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text, **env)
