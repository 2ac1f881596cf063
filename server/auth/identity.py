"""``Identity``: who a verified token belongs to.

A leaf module: the connection, the handlers and the channel rules all name
an identity, and none of them needs the code that verifies one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token belongs to."""

    user_id: int
    username: str
    role: str
    session_id: str
    expires_at: float  # unix time at which the token expires
