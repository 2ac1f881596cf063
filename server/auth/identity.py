"""``Identity``: who a verified token (or a backend's connect proxy) says a client is.

A leaf module: the connection, the handlers and the channel rules all name
an identity, and none of them needs the code that verifies one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client is.

    Stagewire's own accounts fill the first five fields. A user vouched for by
    the backend's connect proxy (``server.hooks.proxy``) has ``user_id`` 0,
    the backend's id as ``username``, and may have a display ``name`` and
    ``roles``; with no expiry from the backend, ``expires_at`` is infinite.
    """

    user_id: int
    username: str
    role: str
    session_id: str
    expires_at: float  # unix time at which the token expires; math.inf: never
    name: str | None = None
    roles: tuple[str, ...] = ()
    proxied: bool = False

    def expires_in(self) -> int:
        """Whole seconds left, for replies; 0 when the identity does not expire."""
        if math.isinf(self.expires_at):
            return 0
        return max(0, int(self.expires_at - time.time()))

    def public(self) -> dict[str, Any]:
        """The ``user`` object of the ``connect`` reply."""
        if not self.proxied:
            return {"id": self.user_id, "username": self.username, "role": self.role}
        out: dict[str, Any] = {"id": self.username, "username": self.username, "role": self.role,
                               "roles": list(self.roles)}
        if self.name is not None:
            out["name"] = self.name
        return out
