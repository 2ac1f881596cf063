"""Encryption at rest: AES-256-GCM under a ring of keys, for rotation.

A :class:`Keyring` holds keys oldest first. The newest (last) one encrypts;
every one decrypts. Each ciphertext is stored with the *id* of its key, a
short hash of the key itself (never the key), so reordering or removing other
keys never changes which key opens a row, and a row under a key that is no
longer configured fails loudly instead of decrypting to garbage.

A sealed value is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. The
nonce is random: with 96-bit random nonces one key is good for about 2**32
encryptions before the collision risk matters, so rotate well before that.
``aad`` (associated data) binds a ciphertext to its place (say, its room), so
a row copied elsewhere does not decrypt.

Keys are 32 random bytes in standard base64; make one with
``python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
KEY_SIZE = 32


class DecryptionError(Exception):
    """A value cannot be opened: unknown key id, or altered or misplaced ciphertext."""


def decode_key(text: str) -> bytes:
    """A key from its base64 form; ValueError unless it is exactly 32 bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a key must be base64") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"a key must be {KEY_SIZE} bytes, not {len(raw)}")
    return raw


def new_key() -> str:
    """A fresh random key in base64."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode()


def key_id(key: bytes) -> str:
    """The public id of ``key``: 12 hex digits of a domain-separated SHA-256."""
    return hashlib.sha256(b"stagewire key id\x00" + key).hexdigest()[:12]


class Keyring:
    """AES-GCM keys, oldest first; the last one encrypts.

    Args:
        keys: Raw 32-byte keys, oldest first. At least one.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._ciphers = {key_id(k): AESGCM(k) for k in keys}
        self.current_id = key_id(keys[-1])

    @classmethod
    def from_strings(cls, keys: Sequence[str]) -> Keyring:
        """A keyring from base64 keys, oldest first."""
        return cls([decode_key(k) for k in keys])

    def __contains__(self, kid: object) -> bool:
        return kid in self._ciphers

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> tuple[str, bytes]:
        """``(key id, nonce || ciphertext || tag)`` under the newest key."""
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._ciphers[self.current_id].encrypt(nonce, plaintext, aad)
        return self.current_id, nonce + sealed

    def decrypt(self, kid: str, blob: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of ``blob``, sealed under key ``kid`` with the same ``aad``.

        Raises:
            DecryptionError: The key is not in the ring, or the blob or its
                ``aad`` do not match (altered, truncated, or moved).
        """
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(f"no key with id {kid!r} is configured")
        if len(blob) < NONCE_SIZE + 16:
            raise DecryptionError("ciphertext too short")
        try:
            return cipher.decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)
        except InvalidTag:
            raise DecryptionError(f"ciphertext under key {kid!r} does not authenticate") from None
