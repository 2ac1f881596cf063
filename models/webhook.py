"""The webhook outbox: every event waiting for its webhook, and who sends each webhook's events.

Rows are written by :mod:`server.hooks.outbox` in groups (one multi-row insert
per group) and deleted once their webhook answered 2xx. A row whose webhook
kept failing for ``[hooks] max_attempts`` tries stays, in the ``dead`` state,
until ``stagewire webhooks retry`` (or ``POST /api/webhooks/retry``) sends it
again.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

PENDING = "pending"
DEAD = "dead"


class WebhookEvent(Model):
    """One event for one webhook. ``id`` orders a webhook's events: they are sent oldest first."""

    id = fields.BigIntField(primary_key=True)
    webhook = fields.CharField(max_length=255)
    event_id = fields.CharField(max_length=32)
    name = fields.CharField(max_length=32)
    channel = fields.CharField(max_length=255, null=True)
    # The event's JSON, encoded once when it happened; a POST body joins them as they are.
    payload = fields.TextField()
    state = fields.CharField(max_length=8, default=PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_ms = fields.BigIntField(default=0)
    last_error = fields.CharField(max_length=500, null=True)
    created_ms = fields.BigIntField()

    class Meta:
        table = "webhook_outbox"
        table_description = "Webhook events waiting to be sent, and the dead letters"
        indexes = (("webhook", "state", "id"),)


class WebhookLease(Model):
    """Which node sends a webhook's events, until when: one sender per webhook keeps their order."""

    webhook = fields.CharField(max_length=255, primary_key=True)
    owner = fields.CharField(max_length=64)
    expires_ms = fields.BigIntField()

    class Meta:
        table = "webhook_leases"
        table_description = "The node sending each webhook's events"
