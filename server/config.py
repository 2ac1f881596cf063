"""Settings: frozen dataclasses loaded from ``config.toml`` plus the environment.

Every setting in ``config.toml`` can be overridden by an environment variable
named ``STAGEWIRE_<SECTION>__<KEY>`` (double underscore between levels), for
example ``STAGEWIRE_SERVER__PORT=9000`` or
``STAGEWIRE_NAMESPACES__NEWS__PUBLISH=server``. A value is read as a TOML
literal when it parses as one (``true``, ``5``, ``["a", "b"]``) and as a plain
string otherwise; list settings also accept a comma-separated string.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "STAGEWIRE_"


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    allowed_origins: tuple[str, ...] = ()
    shutdown_timeout: float = 5.0
    static_dir: str = "static"
    workers: int = 1
    use_uvloop: bool = True
    log_format: str = "json"  # json | text (stagewire serve)
    stats_channel: str = "ops:stats"  # "" for none; see server/stats.py
    stats_interval: float = 1.0  # seconds; 0 for none

    def __post_init__(self) -> None:
        if self.log_format not in ("json", "text"):
            raise ConfigError("server.log_format: json or text")


@dataclass(frozen=True)
class ClientSettings:
    ping_interval: float = 25.0
    connect_timeout: float = 10.0
    max_message_size: int = 65536
    write_buffer_limit: int = 1_048_576
    write_delay: float = 0.0
    command_rate: float = 100.0
    command_burst: int = 200
    max_subscriptions: int = 512


@dataclass(frozen=True)
class AuthSettings:
    secrets: tuple[str, ...] = ()
    secret_file: str = ".stagewire/secret"
    token_ttl: int = 3600
    login_max_failures: int = 5
    login_window: float = 300.0
    admins: tuple[str, ...] = ()
    # argon2id cost (RFC 9106's second recommendation); tests lower them.
    password_time_cost: int = 3
    password_memory_cost: int = 65536  # KiB
    password_parallelism: int = 4


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite://data/stagewire.sqlite3"
    group_commit_max: int = 1000


@dataclass(frozen=True)
class BrokerSettings:
    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "stagewire"
    # Seconds a presence entry lives without a refresh: a dead node's users leave within it.
    presence_ttl: float = 30.0
    # Redis broker only (see server/broker/redis.py).
    pubsub_shards: int = 4  # pub/sub connections per node; channels spread by a stable hash
    sharded_pubsub: bool = False  # SSUBSCRIBE/SPUBLISH (Redis 7+, for Redis Cluster)
    socket_timeout: float = 1.5  # seconds for a connect or a command before BrokerUnavailable
    max_connections: int = 50  # command connections per node; more commands wait for one
    ping_interval: float = 5.0  # a silent pub/sub connection is pinged, and dropped after 2x
    reconnect_min_delay: float = 0.1  # reconnect backoff: doubles from min to max, ±20% jitter
    reconnect_max_delay: float = 5.0


@dataclass(frozen=True)
class ApiSettings:
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoomsSettings:
    """The rooms application (``handlers/rooms``): limits, membership cache, encryption at rest."""

    encrypt_at_rest: bool = False
    keys: tuple[str, ...] = ()  # base64 AES-256 keys, newest last: the last encrypts, all decrypt
    max_body: int = 4000  # characters of a message body
    membership_cache_ttl: float = 60.0  # seconds a cached "is a member" answer is trusted
    membership_cache_size: int = 10000  # (room, user) answers cached per node

    def __post_init__(self) -> None:
        for key in self.keys:
            try:
                size = len(base64.b64decode(key, validate=True))
            except (binascii.Error, ValueError):
                size = 0
            if size != 32:
                raise ConfigError("rooms.keys: each key must be 32 random bytes in base64")
        if self.encrypt_at_rest and not self.keys:
            raise ConfigError("rooms.encrypt_at_rest needs rooms.keys (STAGEWIRE_ROOMS__KEYS)")
        if self.max_body < 1:
            raise ConfigError("rooms.max_body must be positive")


@dataclass(frozen=True)
class NamespaceSettings:
    """Rules of one channel namespace (the part of ``ns:name`` before the colon)."""

    name: str = ""
    subscribe: str = "authenticated"  # authenticated | owner | admin | custom
    publish: str = "client"  # client | subscriber | server
    join_leave: bool = False
    history_size: int = 100
    history_ttl: float = 300.0
    persist: bool = False
    recover_max: int = 10000
    presence: bool = False

    def __post_init__(self) -> None:
        if self.subscribe not in ("authenticated", "owner", "admin", "custom"):
            raise ConfigError(f"namespaces.{self.name}.subscribe: authenticated, owner, admin or custom")
        if self.publish not in ("client", "subscriber", "server"):
            raise ConfigError(f"namespaces.{self.name}.publish: client, subscriber or server")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    rooms: RoomsSettings = field(default_factory=RoomsSettings)
    namespaces: Mapping[str, NamespaceSettings] = field(default_factory=dict)
    base_dir: str = "."

    def path(self, relative: str) -> Path:
        """Resolve a path setting against the directory of the config file."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def replace(self, **sections: Any) -> "Settings":
        """A copy with some sections replaced; sections may be given as dicts of changes."""
        changes = {}
        for name, value in sections.items():
            if isinstance(value, dict) and name != "namespaces":
                value = dataclasses.replace(getattr(self, name), **value)
            elif name == "namespaces":
                value = {k: _build(NamespaceSettings, {"name": k, **v}, f"namespaces.{k}")
                         if isinstance(v, dict) else v for k, v in value.items()}
            changes[name] = value
        return dataclasses.replace(self, **changes)


def load_settings(
    path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load ``config.toml`` (or ``path``) and apply ``STAGEWIRE_*`` overrides."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("STAGEWIRE_CONFIG", "config.toml")
    path = Path(path)
    raw: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    elif "STAGEWIRE_CONFIG" in environ or path.name != "config.toml":
        raise ConfigError(f"config file not found: {path}")
    _apply_env(raw, environ)
    return settings_from_dict(raw, base_dir=str(path.resolve().parent))


def settings_from_dict(raw: Mapping[str, Any], base_dir: str = ".") -> Settings:
    """Build :class:`Settings` from a parsed TOML document."""
    raw = dict(raw)
    namespaces_raw = raw.pop("namespaces", {}) or {}
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Settings)
    for key, value in raw.items():
        if key not in hints or key in ("namespaces", "base_dir"):
            raise ConfigError(f"unknown section [{key}]")
        sections[key] = _build(hints[key], value, key)
    namespaces = {
        name: _build(NamespaceSettings, {**ns, "name": name}, f"namespaces.{name}")
        for name, ns in namespaces_raw.items()
    }
    return Settings(**sections, namespaces=namespaces, base_dir=base_dir)


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown setting {where}.{key}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return tuple(str(v) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where} must be true or false")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where} must be a number")
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    return value


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "STAGEWIRE_CONFIG":
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            continue
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {part} is not a table")
        node[parts[-1]] = _parse_env_value(value)


def _parse_env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value
