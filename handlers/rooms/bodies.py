"""Message bodies at rest: plaintext, or AES-GCM under the ``[rooms] keys`` ring.

A stored body is a pair ``(key_id, text)``: ``key_id`` None means ``text`` is
the body itself; otherwise ``text`` is the base64 ciphertext sealed under that
key, with the room id as associated data (a row moved to another room does
not decrypt). Reading never depends on ``encrypt_at_rest``: rows written
before it was turned on (plaintext) or after it was turned off (ciphertext,
as long as the keys stay configured) all read back. Ids, authors and times
are not encrypted, so reading a message by id, paging and counting are the
same queries either way.
"""

from __future__ import annotations

import base64
import functools

from handlers.rooms.settings import RoomsSettings
from handlers.rooms.crypto import DecryptionError, Keyring

__all__ = ["BodyCodec", "DecryptionError", "codec_for"]


class BodyCodec:
    """Seals bodies for storage and opens stored ones, per ``[rooms]`` settings."""

    def __init__(self, settings: RoomsSettings) -> None:
        self.encrypt = settings.encrypt_at_rest
        self.keyring = Keyring.from_strings(settings.keys) if settings.keys else None

    def seal(self, body: str, room_id: int) -> tuple[str | None, str]:
        """``(key_id, text)`` to store for ``body`` in room ``room_id``."""
        if not self.encrypt or self.keyring is None:
            return None, body
        kid, blob = self.keyring.encrypt(body.encode(), _aad(room_id))
        return kid, base64.b64encode(blob).decode()

    def open(self, key_id: str | None, text: str, room_id: int) -> str:
        """The body stored as ``(key_id, text)``.

        Raises:
            DecryptionError: The row's key is not configured, or the row was altered.
        """
        if key_id is None:
            return text
        if self.keyring is None:
            raise DecryptionError(f"message under key {key_id!r}, but no [rooms] keys are configured")
        return self.keyring.decrypt(key_id, base64.b64decode(text), _aad(room_id)).decode()

    def is_current(self, key_id: str | None) -> bool:
        """Whether a row stored under ``key_id`` is as it would be written now."""
        if not self.encrypt or self.keyring is None:
            return key_id is None
        return key_id == self.keyring.current_id


def _aad(room_id: int) -> bytes:
    return b"stagewire room message\x00%d" % room_id


@functools.lru_cache(maxsize=8)
def codec_for(settings: RoomsSettings) -> BodyCodec:
    """The codec of ``settings`` (frozen, hence a cache key): keys are decoded once."""
    return BodyCodec(settings)
