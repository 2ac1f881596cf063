"""Server API keys kept in the database, beside the ones in ``[api] keys``.

Only the SHA-256 of a key is stored: the key itself is shown once, when
``stagewire apikey create`` makes it, and cannot be read back. A key is never
deleted, only revoked, so that ``apikey list`` keeps its history.

Schema changes need a migration: ``tortoise -c models.db.TORTOISE_ORM
makemigrations`` (see :mod:`models.db`).
"""

from __future__ import annotations

import hashlib

from tortoise import fields
from tortoise.models import Model


def key_hash(key: str) -> str:
    """The stored form of ``key``: its SHA-256, in hex.

    A plain, unsalted hash is enough here: the keys are 256 random bits, so
    there is nothing to guess, and the hash must be looked up by value.
    """
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(Model):
    """One named key for the server HTTP API."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    # Unique, hence indexed: a request's key is found by its hash.
    key_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"
        # Explicit, as in models.user: the docstring must not become the schema.
        table_description = "Server API keys, stored as their sha256"

    def __str__(self) -> str:
        return self.name
