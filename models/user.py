"""Accounts: users and their login sessions.

A :class:`User` signs in with a password and gets an :class:`AuthSession`; the
signed token a client holds names that session. Revoking the session (logout)
kills every token issued for it, wherever it is used.

Schema changes need a migration: ``tortoise -c models.db.TORTOISE_ORM
makemigrations`` (see :mod:`models.db`).
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Role(StrEnum):
    """What a user may do beyond the ordinary."""

    USER = "user"
    ADMIN = "admin"


class User(Model):
    """An account. Usernames are stored lower-case (see ``server.auth.sessions``)."""

    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=32, unique=True)
    # An argon2 PHC string (about 100 characters); the rest is headroom for
    # stronger parameters or another algorithm later.
    password_hash = fields.CharField(max_length=255)
    # A plain string column, not CharEnumField, so that migrations never import
    # this module's Role and stay valid when the enum grows.
    role = fields.CharField(max_length=16, default=Role.USER.value)
    created_at = fields.DatetimeField(auto_now_add=True)

    sessions: fields.ReverseRelation[AuthSession]

    class Meta:
        table = "users"
        # Set explicitly: otherwise Tortoise takes the docstring's first line,
        # and rewording it would call for a migration. No semicolons: Tortoise
        # splits SQLite DDL on them, comment included.
        table_description = "Accounts"

    def __str__(self) -> str:
        return self.username


class AuthSession(Model):
    """One login: what a token refers to, and what logout revokes.

    Looked up by primary key on every token verification; ``user`` is indexed
    to revoke all of a user's sessions, ``expires_at`` to purge old rows.
    """

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "stagewire.User", related_name="sessions", on_delete=fields.CASCADE, db_index=True
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "auth_sessions"
        table_description = "Login sessions, which tokens refer to"

    def __str__(self) -> str:
        return str(self.id)
