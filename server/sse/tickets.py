"""Credentials for ``GET /sse`` that never put a token in a URL.

EventSource cannot send an ``Authorization`` header, so:

* **Tickets.** ``POST /api/sse/ticket`` (with the user's bearer token)
  returns a ticket: the identity, signed with the token secrets
  (itsdangerous, its own salt), valid for ``TICKET_TTL`` seconds and for one
  use only, across the cluster: its nonce is an idempotency key on the
  broker's ``#sse:tickets`` stream, which every node shares, so a second use
  anywhere finds it taken.
* **A cookie session.** The same route with ``{"cookie": true}`` also sets
  ``stagewire_sse``: the token itself, ``HttpOnly``, ``SameSite=Strict``,
  ``Path=/sse`` (``Secure`` over HTTPS), for as long as the token lives. The
  browser sends it on EventSource's own reconnects, which a single-use ticket
  cannot serve; each use is verified like a bearer token (logout ends it).
"""

from __future__ import annotations

import secrets

from itsdangerous import BadData, URLSafeTimedSerializer

from server.auth.identity import Identity
from server.broker.base import Broker, HistoryOptions
from server.errors import CommandError, ErrorCode

TICKET_TTL = 60
COOKIE = "stagewire_sse"
_SALT = "stagewire.sse-ticket"
_USED = "#sse:tickets"
_USED_HISTORY = HistoryOptions(size=0, ttl=TICKET_TTL, meta_ttl=2 * TICKET_TTL)


class Tickets:
    def __init__(self, secrets_: list[str], broker: Broker) -> None:
        self._serializer = URLSafeTimedSerializer(list(secrets_), salt=_SALT)
        self._broker = broker

    def issue(self, identity: Identity) -> str:
        return str(self._serializer.dumps({
            "u": identity.user_id, "n": identity.username, "r": identity.role,
            "s": identity.session_id, "e": identity.expires_at, "k": secrets.token_urlsafe(12),
        }))

    async def redeem(self, ticket: str) -> Identity:
        """The ticket's identity, once; ``UNAUTHORIZED`` if it is bad, expired or used."""
        try:
            claims = self._serializer.loads(ticket, max_age=TICKET_TTL)
            identity = Identity(int(claims["u"]), str(claims["n"]), str(claims["r"]), str(claims["s"]),
                                float(claims["e"]))
            nonce = str(claims["k"])
        except (BadData, KeyError, TypeError, ValueError):
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid or expired ticket") from None
        position = await self._broker.publish(_USED, None, history=_USED_HISTORY, idempotency_key=nonce)
        if position.already:
            raise CommandError(ErrorCode.UNAUTHORIZED, "ticket already used")
        return identity
