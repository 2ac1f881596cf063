"""Settings: frozen dataclasses loaded from ``config.toml`` plus the environment.

Every setting in ``config.toml`` can be overridden by an environment variable
named ``STAGEWIRE_<SECTION>__<KEY>`` (double underscore between levels), for
example ``STAGEWIRE_SERVER__PORT=9000`` or
``STAGEWIRE_NAMESPACES__NEWS__PUBLISH=server``. A value is read as a TOML
literal when it parses as one (``true``, ``5``, ``["a", "b"]``) and as a plain
string otherwise; list settings also accept a comma-separated string.

The sections of the core are fixed here. A handler application adds its own
(``[rooms]``, say) by naming its dataclass in the registry
(``handlers.REGISTRY.sections``): those tables are kept as read, checked
against their dataclasses by :meth:`Settings.check_sections` when the server
starts, and read with :meth:`Settings.section`.

``[[webhooks]]`` is an array of tables; from the environment its entries are
addressed by position: ``STAGEWIRE_WEBHOOKS__0__SECRET=...``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

ENV_PREFIX = "STAGEWIRE_"
T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    allowed_origins: tuple[str, ...] = ()
    shutdown_timeout: float = 5.0
    # [min_ms, max_ms] sent with the SIGTERM disconnect (4000): each client waits a random
    # time in it before reconnecting, so a restart's clients come back spread out. [0, 0]: none.
    shutdown_reconnect_after: tuple[int, int] = (500, 5000)
    # WebSocket handshakes (upgrade to connect reply) in progress at most; more get HTTP 503
    # with {"try_again": ms} before the upgrade. 0: no limit.
    max_handshakes: int = 0
    static_dir: str = "static"
    workers: int = 1
    use_uvloop: bool = True
    log_format: str = "json"  # json | text (stagewire serve)
    # One INFO line per connection opened and closed, on the logger stagewire.connections
    # (server/ops/logs.py): opt-in, as in a reconnect storm they cost about a seventh of each connect.
    connection_log: bool = False
    stats_channel: str = "ops:stats"  # "" for none; see server/ops/stats.py
    stats_interval: float = 1.0  # seconds; 0 for none
    # Seconds between looks at whether to give the heap's free pages back after connections
    # came and went (server/ops/heap.py); 0: never.
    heap_trim_interval: float = 1.0
    header_timeout: float = 10.0  # seconds to send a request's headers (and to idle between requests)
    tls_cert: str = ""  # PEM certificate chain: serve HTTPS and WSS directly (with tls_key)
    tls_key: str = ""  # PEM private key of tls_cert

    def __post_init__(self) -> None:
        if self.log_format not in ("json", "text"):
            raise ConfigError("server.log_format: json or text")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("server.tls_cert and server.tls_key go together")
        spread = self.shutdown_reconnect_after
        if len(spread) != 2 or not 0 <= spread[0] <= spread[1]:
            raise ConfigError("server.shutdown_reconnect_after: [min_ms, max_ms] with 0 <= min_ms <= max_ms")


@dataclass(frozen=True)
class ClientSettings:
    ping_interval: float = 25.0
    connect_timeout: float = 10.0
    max_message_size: int = 65536
    write_buffer_limit: int = 1_048_576
    socket_unsent_limit: int = 16384
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
    # Valid sessions a node remembers, so a connect reads no database (server/auth/session_cache.py).
    session_cache_size: int = 100_000  # 0: ask the database on every connect
    session_cache_ttl: float = 60.0  # seconds; the worst-case staleness of a revocation (docs/scaling.md)
    # Fill the cache with the newest valid sessions when the node starts, before it is ready,
    # so that the clients of a restart reconnect without a database read.
    session_cache_preload: bool = True
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
    # Seconds between checks of every held channel's stream position against what was
    # delivered (one batched read), catching a lost publication that nothing follows.
    position_check_interval: float = 5.0
    # Redis Cluster: "host:port" of some of its nodes; set, it replaces redis_url,
    # and pub/sub is sharded per slot owner (see server/broker/redis_cluster.py).
    cluster_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for node in self.cluster_nodes:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"broker.cluster_nodes: {node!r} is not host:port")

    @property
    def cluster(self) -> bool:
        """Whether Redis is a Redis Cluster (``cluster_nodes`` set)."""
        return bool(self.cluster_nodes)

    @property
    def sharded(self) -> bool:
        """Whether pub/sub is sharded (SSUBSCRIBE/SPUBLISH): asked for, or implied by a cluster."""
        return self.sharded_pubsub or self.cluster


@dataclass(frozen=True)
class ApiSettings:
    keys: tuple[str, ...] = ()


#: What a Pusher app's webhook may ask for (``event_types``; docs/pusher.md describes each one).
PUSHER_WEBHOOK_EVENTS = (
    "channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss",
)


@dataclass(frozen=True)
class PusherWebhookFilter:
    """Which channels a Pusher webhook hears of (Soketi's ``filter``); empty takes every channel."""

    channel_name_starts_with: str = ""
    channel_name_ends_with: str = ""

    def takes(self, channel: str) -> bool:
        return channel.startswith(self.channel_name_starts_with) and channel.endswith(self.channel_name_ends_with)


@dataclass(frozen=True)
class PusherWebhookSettings:
    """One ``[[pusher.apps.webhooks]]`` entry: a URL and the event types it receives, signed with the app's secret."""

    url: str = ""
    event_types: tuple[str, ...] = ()
    filter: PusherWebhookFilter = field(default_factory=PusherWebhookFilter)
    # Pusher's "batch webhooks": a POST carries every event waiting (up to [hooks] batch_max); false: one each.
    batch: bool = True
    # Names the webhook in the outbox, the CLI and /metrics (as "pusher:<app id>:<name>"); the URL by default.
    name: str = ""

    def __post_init__(self) -> None:
        where = f"pusher.apps.webhooks.{self.name or self.url or '?'}"
        _check_url(self.url, f"{where}.url")
        if not self.event_types:
            raise ConfigError(f"{where}.event_types: name at least one of {', '.join(PUSHER_WEBHOOK_EVENTS)}")
        unknown = sorted(set(self.event_types) - set(PUSHER_WEBHOOK_EVENTS))
        if unknown:
            raise ConfigError(f"{where}.event_types: unknown {unknown}; known: {', '.join(PUSHER_WEBHOOK_EVENTS)}")
        if not self.name:
            object.__setattr__(self, "name", self.url)


@dataclass(frozen=True)
class PusherAppSettings:
    """One Pusher Channels app (``[[pusher.apps]]``); see docs/pusher.md."""

    id: str = ""
    key: str = ""
    secret: str = ""  # set it from the environment: STAGEWIRE_PUSHER__APPS__0__SECRET
    namespace: str = "pusher"  # Pusher channel X is the Stagewire channel "<namespace>:X"
    enabled: bool = True
    client_events: bool = False
    max_connections: int = 0  # across the cluster; 0: no limit
    activity_timeout: int = 120  # seconds, told to clients in pusher:connection_established
    client_event_rate: float = 10.0  # client events per second per connection
    max_event_size: int = 10240  # bytes of an event's data (HTTP API and client events)
    max_presence_members: int = 100
    max_presence_member_size: int = 1024  # bytes of a member's user_info
    encryption_master_key: str = ""  # base64 of 32 bytes: /pusher/auth gives private-encrypted- keys
    webhooks: tuple[PusherWebhookSettings, ...] = ()  # Pusher's webhooks, signed with the key and secret

    def __post_init__(self) -> None:
        for name in ("id", "key", "secret"):
            if not getattr(self, name):
                raise ConfigError(f"pusher.apps: every app needs an {name}" if name == "id" else f"pusher.apps: every app needs a {name}")
        names = [hook.name for hook in self.webhooks]
        if len(set(names)) != len(names):
            raise ConfigError(f"pusher.apps: app {self.id} has two webhooks of the same name (or URL)")
        if any(len(self.webhook_name(hook)) > 255 for hook in self.webhooks):
            raise ConfigError(f"pusher.apps: app {self.id}'s webhook names must be shorter (255 characters "
                              "with the app id)")

    def webhook_name(self, hook: PusherWebhookSettings) -> str:
        """The webhook's name in the outbox, unique across apps and the ``[[webhooks]]``."""
        return f"pusher:{self.id}:{hook.name}"


@dataclass(frozen=True)
class PusherSettings:
    apps: tuple[PusherAppSettings, ...] = ()


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
    # Backend decisions for this namespace (docs/hooks.md): a URL, "" for the
    # [proxy] one, "off" for none even when [proxy] names one.
    subscribe_proxy: str = ""
    publish_proxy: str = ""

    def __post_init__(self) -> None:
        for key in ("subscribe_proxy", "publish_proxy"):
            value = getattr(self, key)
            if value not in ("", "off"):
                _check_url(value, f"namespaces.{self.name}.{key}", '"", "off" or ')
        if self.subscribe not in ("authenticated", "owner", "admin", "custom"):
            raise ConfigError(f"namespaces.{self.name}.subscribe: authenticated, owner, admin or custom")
        if self.publish not in ("client", "subscriber", "server"):
            raise ConfigError(f"namespaces.{self.name}.publish: client, subscriber or server")


#: What a ``[[webhooks]]`` entry may ask for (docs/hooks.md describes each one).
WEBHOOK_EVENTS = (
    "connect", "disconnect", "subscribe", "unsubscribe", "publish",
    "channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event",
)


@dataclass(frozen=True)
class WebhookSettings:
    """One ``[[webhooks]]`` entry: where events are POSTed, which ones, and the signing secret."""

    url: str = ""
    events: tuple[str, ...] = ()
    # Namespaces ("chat"), channels ("chat:lobby") or patterns ("room:*"); empty for every channel.
    channels: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    # Names the webhook in the outbox, the CLI and /metrics; the URL by default.
    name: str = ""

    def __post_init__(self) -> None:
        where = f"webhooks.{self.name or self.url or '?'}"
        _check_url(self.url, f"{where}.url")
        if not self.events:
            raise ConfigError(f"{where}.events: name at least one of {', '.join(WEBHOOK_EVENTS)}")
        unknown = sorted(set(self.events) - set(WEBHOOK_EVENTS))
        if unknown:
            raise ConfigError(f"{where}.events: unknown {unknown}; known: {', '.join(WEBHOOK_EVENTS)}")
        if not self.secret:
            raise ConfigError(f"{where}.secret is required: set it from the environment, "
                              "e.g. STAGEWIRE_WEBHOOKS__0__SECRET")
        if not self.name:
            object.__setattr__(self, "name", self.url)
        if len(self.name) > 255:
            raise ConfigError(f"{where}.name: at most 255 characters")


@dataclass(frozen=True)
class HooksSettings:
    """Webhook delivery: the outbox, batches, retries and the grace of vacated/removed events."""

    max_attempts: int = 10
    retry_min_delay: float = 1.0
    retry_max_delay: float = 300.0
    batch_max: int = 100
    timeout: float = 5.0
    grace: float = 3.0
    queue_max: int = 100_000
    poll_interval: float = 1.0
    max_connections: int = 100

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.batch_max < 1 or self.queue_max < 1 or self.max_connections < 1:
            raise ConfigError("hooks.max_attempts, batch_max, queue_max and max_connections must be at least 1")
        if not 0 < self.retry_min_delay <= self.retry_max_delay:
            raise ConfigError("hooks: 0 < retry_min_delay <= retry_max_delay")
        if self.grace < 0 or self.timeout <= 0 or self.poll_interval <= 0:
            raise ConfigError("hooks: grace must be >= 0, timeout and poll_interval > 0")


@dataclass(frozen=True)
class ProxySettings:
    """Backend endpoints that decide connects, refreshes, subscribes, publishes and RPCs."""

    connect: str = ""
    refresh: str = ""
    subscribe: str = ""
    publish: str = ""
    rpc: str = ""
    timeout: float = 3.0
    secret: str = field(default="", repr=False)
    headers: tuple[str, ...] = ("Cookie", "Authorization", "User-Agent", "Accept-Language")
    tokens: bool = True
    refresh_ahead: float = 10.0

    def __post_init__(self) -> None:
        for key in ("connect", "refresh", "subscribe", "publish", "rpc"):
            if getattr(self, key):
                _check_url(getattr(self, key), f"proxy.{key}")
        if self.timeout <= 0 or self.refresh_ahead < 0:
            raise ConfigError("proxy: timeout must be > 0 and refresh_ahead >= 0")
        if not self.tokens and not self.connect:
            raise ConfigError("proxy.tokens = false needs a connect proxy (proxy.connect)")


def _check_url(url: str, where: str, other: str = "") -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) < 10:
        raise ConfigError(f"{where}: {other}an http:// or https:// URL")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    hooks: HooksSettings = field(default_factory=HooksSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    webhooks: tuple[WebhookSettings, ...] = ()
    pusher: PusherSettings = field(default_factory=PusherSettings)
    namespaces: Mapping[str, NamespaceSettings] = field(default_factory=dict)
    # The tables of sections that handler applications declare, as read.
    apps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    base_dir: str = "."
    _built: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def section(self, name: str, cls: type[T]) -> T:
        """An application's section ``[name]`` as a ``cls`` (its defaults if the table is absent)."""
        built = self._built.get(name)
        if not isinstance(built, cls):
            built = self._built[name] = _build(cls, self.apps.get(name, {}), name)
        return built

    def check_sections(self, sections: Mapping[str, type]) -> None:
        """Raise :class:`ConfigError` for a section no application declares, or a bad value in one."""
        for name in self.apps:
            if name not in sections:
                raise ConfigError(f"unknown section [{name}]")
        for name, cls in sections.items():
            self.section(name, cls)

    def path(self, relative: str) -> Path:
        """Resolve a path setting against the directory of the config file."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def replace(self, **sections: Any) -> "Settings":
        """A copy with some sections replaced; sections may be given as dicts of changes."""
        changes: dict[str, Any] = {}
        apps = dict(self.apps)
        for name, value in sections.items():
            if name == "webhooks":
                changes[name] = _webhooks(value)
                continue
            if name not in _CORE_SECTIONS and name not in ("namespaces", "base_dir"):
                apps[name] = {**apps.get(name, {}), **value}
                changes["apps"] = apps
                continue
            if isinstance(value, dict) and name != "namespaces":
                value = dataclasses.replace(getattr(self, name), **value)
            elif name == "namespaces":
                value = {k: _build(NamespaceSettings, {"name": k, **v}, f"namespaces.{k}")
                         if isinstance(v, dict) else v for k, v in value.items()}
            changes[name] = value
        return dataclasses.replace(self, **changes, _built={})


_CORE_SECTIONS = frozenset(f.name for f in dataclasses.fields(Settings)) - {
    "namespaces", "webhooks", "apps", "base_dir", "_built"}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    sections: Mapping[str, type] | None = None,
) -> Settings:
    """Load ``config.toml`` (or ``path``) and apply ``STAGEWIRE_*`` overrides.

    With ``sections`` (the applications' sections), those are checked at once.
    """
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
    return settings_from_dict(raw, base_dir=str(path.resolve().parent), sections=sections)


def settings_from_dict(
    raw: Mapping[str, Any], base_dir: str = ".", sections: Mapping[str, type] | None = None
) -> Settings:
    """Build :class:`Settings` from a parsed TOML document.

    Tables other than the core's are kept for the applications; with
    ``sections`` they are checked at once (see :meth:`Settings.check_sections`).
    """
    raw = dict(raw)
    namespaces_raw = raw.pop("namespaces", {}) or {}
    webhooks = _webhooks(raw.pop("webhooks", ()))
    core: dict[str, Any] = {}
    apps: dict[str, Mapping[str, Any]] = {}
    hints = typing.get_type_hints(Settings)
    for key, value in raw.items():
        if key in _CORE_SECTIONS:
            core[key] = _build(hints[key], value, key)
        elif isinstance(value, Mapping):
            apps[key] = value
        else:
            raise ConfigError(f"unknown section [{key}]")
    namespaces = {
        name: _build(NamespaceSettings, {**ns, "name": name}, f"namespaces.{name}")
        for name, ns in namespaces_raw.items()
    }
    settings = Settings(**core, webhooks=webhooks, namespaces=namespaces, apps=apps, base_dir=base_dir)
    if sections is not None:
        settings.check_sections(sections)
    return settings


def _webhooks(raw: Any) -> tuple[WebhookSettings, ...]:
    """``[[webhooks]]`` as read: a list of tables, or (from the environment alone) tables by position."""
    if isinstance(raw, Mapping):
        if not all(str(k).isdigit() for k in raw):
            raise ConfigError("[[webhooks]] entries are addressed by position: STAGEWIRE_WEBHOOKS__0__URL")
        raw = [raw[k] for k in sorted(raw, key=int)]
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("webhooks must be an array of tables ([[webhooks]])")
    hooks = tuple(
        entry if isinstance(entry, WebhookSettings) else _build(WebhookSettings, entry, f"webhooks.{i}")
        for i, entry in enumerate(raw)
    )
    names = [hook.name for hook in hooks]
    if len(set(names)) != len(names):
        raise ConfigError("webhooks: two entries have the same name (or URL); give them distinct names")
    return hooks


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
    item = typing.get_args(hint)[0] if origin is tuple and typing.get_args(hint) else None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        # A table inside a table, e.g. pusher.apps.webhooks.filter.
        return value if isinstance(value, hint) else _build(hint, value, where)
    if isinstance(item, type) and dataclasses.is_dataclass(item):
        # An array of tables, e.g. [[pusher.apps]].
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list of tables")
        return tuple(_build(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        if item in (int, float):
            return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
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
        node: Any = raw
        for part in parts[:-1]:
            if isinstance(node, list):
                node = _list_item(node, part, name)
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"{name}: {part} is not a table")
        if isinstance(node, list):
            raise ConfigError(f"{name}: name a key of the entry, e.g. {name}__URL")
        node[parts[-1]] = _parse_env_value(value)


def _list_item(items: list[Any], part: str, name: str) -> Any:
    """Entry ``part`` of an array of tables (one past the end adds one)."""
    if not part.isdigit() or int(part) > len(items):
        raise ConfigError(f"{name}: {part!r} is not a position in the array (0 to {len(items)})")
    if int(part) == len(items):
        items.append({})
    return items[int(part)]


def _parse_env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value
