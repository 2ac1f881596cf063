"""Durable publications: every publication of a ``persist = true`` namespace.

Rows are written by :mod:`server.durable` in groups, before the broker delivers
them, and read back for history and recovery beyond the broker's window.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class PublicationRecord(Model):
    """One stored publication. ``seq`` is the channel offset clients see."""

    id = fields.BigIntField(primary_key=True)
    channel = fields.CharField(max_length=255)
    epoch = fields.CharField(max_length=64)
    seq = fields.BigIntField()
    # JSON text, encoded once by the writer (orjson), so every backend stores the same bytes.
    data = fields.TextField()
    author = fields.CharField(max_length=64, null=True)
    idempotency_key = fields.CharField(max_length=128, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "publications"
        table_description = "Publications of durable namespaces"
        # A key names one publication of its channel, whichever node stored it
        # (rows without a key are not compared: NULLs are distinct).
        unique_together = (("channel", "seq"), ("channel", "idempotency_key"))
