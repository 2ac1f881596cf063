"""The configured Pusher apps (``[[pusher.apps]]``), found by key (WebSocket) and id (HTTP API).

Checked when the server starts: ids and keys are unique, each app's
namespace is declared, and a namespace that tracks presence natively
(``presence`` or ``join_leave``) announces joins and leaves
(``join_leave = true``), so that a Pusher presence channel's members come and
go for everyone, native subscribers included.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Iterator, Mapping

from server.config import ConfigError, NamespaceSettings, PusherAppSettings


class PusherApps:
    def __init__(self, apps: tuple[PusherAppSettings, ...], namespaces: Mapping[str, NamespaceSettings]) -> None:
        self._apps = apps
        for field in ("id", "key"):
            values = [getattr(app, field) for app in apps]
            if len(set(values)) != len(values):
                raise ConfigError(f"pusher.apps: two apps have the same {field}")
        for app in apps:
            ns = namespaces.get(app.namespace)
            if ns is None:
                raise ConfigError(f"pusher.apps: app {app.id}'s namespace {app.namespace!r} is not declared "
                                  f"([namespaces.{app.namespace}])")
            if (ns.presence or ns.join_leave) and not ns.join_leave:
                raise ConfigError(f"pusher.apps: namespace {app.namespace!r} tracks presence without "
                                  "join_leave; set join_leave = true (or presence = false)")
            if app.encryption_master_key:
                try:
                    key = base64.b64decode(app.encryption_master_key, validate=True)
                except (binascii.Error, ValueError):
                    key = b""
                if len(key) != 32:
                    raise ConfigError(f"pusher.apps: app {app.id}'s encryption_master_key must be 32 bytes, base64")

    def __iter__(self) -> Iterator[PusherAppSettings]:
        return iter(self._apps)

    def __bool__(self) -> bool:
        return bool(self._apps)

    def by_key(self, key: str) -> PusherAppSettings | None:
        """The app with this key; every key is compared, in constant time."""
        found = None
        for app in self._apps:
            if hmac.compare_digest(app.key.encode(), key.encode()):
                found = app
        return found

    def by_id(self, app_id: str) -> PusherAppSettings | None:
        return next((app for app in self._apps if app.id == app_id), None)

    def namespaces(self) -> set[str]:
        return {app.namespace for app in self._apps}
