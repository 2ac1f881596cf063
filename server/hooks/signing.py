"""The signature of every webhook POST and proxy call: HMAC-SHA256 over the raw body.

Header (docs/hooks.md):

    X-Stagewire-Signature: sha256=<hex of HMAC-SHA256(secret, raw body)>

The timestamp is inside the signed body (``time_ms``, milliseconds since the
epoch, set at each attempt), so it cannot be changed without breaking the
signature; receivers refuse bodies older than a tolerance (5 minutes in the
examples) to stop replays. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Stagewire-Signature"
PREFIX = "sha256="
#: Seconds a receiver should accept between ``time_ms`` and its own clock (the examples use it).
TOLERANCE = 300.0


def sign(secret: str, body: bytes) -> str:
    """The header's value for ``body``."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None, time_ms: int | None = None,
           tolerance: float = TOLERANCE, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` (compared in constant time), and is recent.

    ``time_ms`` is the body's own timestamp; when given it must be within
    ``tolerance`` seconds of ``now``.
    """
    if not header:
        return False
    if not hmac.compare_digest(sign(secret, body).encode(), header.strip().encode()):
        return False
    if time_ms is not None:
        now = time.time() if now is None else now
        return abs(now - time_ms / 1000) <= tolerance
    return True
