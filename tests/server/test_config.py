"""Settings: config.toml, environment overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers import REGISTRY
from server.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_repository_config_loads_with_documented_defaults():
    settings = load_settings(ROOT / "config.toml", environ={})
    assert settings.server.port == 8080
    assert settings.broker.backend == "memory"
    assert settings.database.url.startswith("sqlite://")
    assert settings.namespaces["user"].subscribe == "owner"
    assert settings.auth.secrets == ()  # never a committed secret


def test_environment_overrides_any_setting():
    env = {
        "STAGEWIRE_SERVER__PORT": "9001",
        "STAGEWIRE_AUTH__SECRETS": "old,new",
        "STAGEWIRE_API__KEYS": '["k1", "k2"]',
        "STAGEWIRE_NAMESPACES__NEWS__PUBLISH": "client",
        "STAGEWIRE_NAMESPACES__EXTRA__JOIN_LEAVE": "true",
        "STAGEWIRE_CLIENT__COMMAND_RATE": "5.5",
        "STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER": "1000,8000",
    }
    settings = load_settings(ROOT / "config.toml", environ=env)
    assert settings.server.port == 9001
    assert settings.auth.secrets == ("old", "new")
    assert settings.api.keys == ("k1", "k2")
    assert settings.namespaces["news"].publish == "client"
    assert settings.namespaces["extra"].join_leave is True
    assert settings.client.command_rate == 5.5
    assert settings.server.shutdown_reconnect_after == (1000, 8000)


@pytest.mark.parametrize(
    "env,message",
    [
        ({"STAGEWIRE_SERVER__PORTT": "1"}, "unknown setting server.portt"),
        ({"STAGEWIRE_SERVER__PORT": "abc"}, "server.port must be a number"),
        ({"STAGEWIRE_NAMESPACES__NEWS__PUBLISH": "anyone"}, "publish"),
        ({"STAGEWIRE_NOPE__X": "1"}, "unknown section"),
        ({"STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER": "5000,1000"}, "min_ms <= max_ms"),
        ({"STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER": "500"}, "shutdown_reconnect_after"),
        ({"STAGEWIRE_SERVER__SHUTDOWN_RECONNECT_AFTER": "a,b"}, "must be a number"),
        ({"STAGEWIRE_BROKER__CLUSTER_NODES": "10.0.0.1"}, "broker.cluster_nodes: '10.0.0.1' is not host:port"),
        ({"STAGEWIRE_BROKER__CLUSTER_NODES": "10.0.0.1:70000"}, "is not host:port"),
    ],
)
def test_bad_settings_are_reported(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(ROOT / "config.toml", environ=env, sections=REGISTRY.sections)


def test_cluster_nodes_from_the_environment_make_a_sharded_redis_cluster():
    plain = load_settings(ROOT / "config.toml", environ={}).broker
    assert (plain.cluster_nodes, plain.cluster, plain.sharded) == ((), False, False)
    broker = load_settings(ROOT / "config.toml", environ={
        "STAGEWIRE_BROKER__CLUSTER_NODES": "10.0.0.1:7000, [::1]:7001"}).broker
    assert broker.cluster_nodes == ("10.0.0.1:7000", "[::1]:7001")
    assert broker.cluster and broker.sharded  # a cluster implies sharded pub/sub


def test_an_applications_section_is_checked_by_its_dataclass():
    with pytest.raises(ConfigError, match="rooms.max_body must be a number"):
        load_settings(ROOT / "config.toml", environ={"STAGEWIRE_ROOMS__MAX_BODY": "lots"},
                      sections=REGISTRY.sections)
    with pytest.raises(ConfigError, match="unknown setting rooms.colour"):
        load_settings(ROOT / "config.toml", environ={"STAGEWIRE_ROOMS__COLOUR": "red"},
                      sections=REGISTRY.sections)


def test_pusher_apps_are_an_array_of_tables_and_each_can_be_set_from_the_environment(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[pusher.apps]]\nid = "1"\nkey = "k"\nsecret = "placeholder"\n'
                    '[[pusher.apps]]\nid = "2"\nkey = "k2"\nsecret = "placeholder"\nclient_events = true\n')
    settings = load_settings(path, environ={"STAGEWIRE_PUSHER__APPS__1__SECRET": "from-env"})
    assert [(a.id, a.secret, a.client_events) for a in settings.pusher.apps] == [
        ("1", "placeholder", False), ("2", "from-env", True)]
    whole = load_settings(path, environ={"STAGEWIRE_PUSHER__APPS": '[{id = "9", key = "k9", secret = "s"}]'})
    assert [a.id for a in whole.pusher.apps] == ["9"]
    with pytest.raises(ConfigError, match="every app needs a secret"):
        load_settings(path, environ={"STAGEWIRE_PUSHER__APPS__0__SECRET": ""})
    with pytest.raises(ConfigError, match="'5' is not a position in the array"):
        load_settings(path, environ={"STAGEWIRE_PUSHER__APPS__5__SECRET": "x"})


def test_a_pusher_apps_namespace_must_be_declared(tmp_path):
    from server.pusher.apps import PusherApps

    settings = load_settings(ROOT / "config.toml", environ={
        "STAGEWIRE_PUSHER__APPS": '[{id = "1", key = "k", secret = "s", namespace = "nowhere"}]'})
    with pytest.raises(ConfigError, match="nowhere"):
        PusherApps(settings.pusher.apps, settings.namespaces)


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_config_toml_documents_every_setting():
    import dataclasses
    import tomllib

    from server import config

    text = (ROOT / "config.toml").read_text()
    raw = tomllib.loads(text)
    # Every section of Settings that is a dataclass (new ones are checked without listing them here).
    core = {f.name: type(f.default_factory()) for f in dataclasses.fields(config.Settings)  # type: ignore[misc]
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())}
    assert {"server", "client", "auth", "database", "broker", "api", "hooks", "proxy"} <= core.keys()
    sections = {**core, **REGISTRY.sections}
    for name, cls in sections.items():
        missing = {f.name for f in dataclasses.fields(cls)} - set(raw[name])
        assert not missing, f"[{name}] does not document {sorted(missing)}"
    app_fields = {f.name for f in dataclasses.fields(config.PusherAppSettings)}
    text = (ROOT / "config.toml").read_text()
    undocumented = {name for name in app_fields if f"#   {name} = " not in text}
    assert not undocumented, f"[[pusher.apps]] does not document {sorted(undocumented)}"
    assert "apps" in raw["pusher"]
    documented = set().union(*(set(ns) for ns in raw["namespaces"].values()))
    namespace_fields = {f.name for f in dataclasses.fields(config.NamespaceSettings)} - {"name"}
    assert not namespace_fields - documented, sorted(namespace_fields - documented)
    # [[webhooks]] is shown as a commented example (no committed receiver, no committed secret).
    lines = text.splitlines()
    start = lines.index("# [[webhooks]]")
    example = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        example.append(line[2:] if line.startswith("# ") else "")
    hook = tomllib.loads("\n".join(example))["webhooks"][0]
    assert {f.name for f in dataclasses.fields(config.WebhookSettings)} <= set(hook), sorted(hook)
