"""The ``[rooms]`` section of ``config.toml``: limits, membership cache, encryption at rest.

Declared in ``handlers.REGISTRY.sections``; every setting can be overridden
like the core's, with ``STAGEWIRE_ROOMS__<KEY>``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from server.config import ConfigError, Settings

SECTION = "rooms"


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


def rooms_section(settings: Settings) -> RoomsSettings:
    """The ``[rooms]`` section of ``settings``."""
    return settings.section(SECTION, RoomsSettings)
