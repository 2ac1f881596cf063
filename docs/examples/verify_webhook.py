"""Verify a Stagewire webhook POST (docs/hooks.md): the signature over the raw body, then its age.

Copy this function into your backend; it needs only the standard library.
"""

import hashlib
import hmac
import json
import time

TOLERANCE_S = 300  # refuse bodies signed more than 5 minutes from now: replays


def verify_webhook(secret: str, body: bytes, signature: str | None) -> dict | None:
    """The POST's payload ``{time_ms, events}`` if it is genuine and recent, else None.

    ``body`` is the raw request body, exactly as received (not re-serialized
    JSON); ``signature`` is the ``X-Stagewire-Signature`` header.
    """
    if not signature:
        return None
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return None
    payload = json.loads(body)
    if abs(time.time() - payload["time_ms"] / 1000) > TOLERANCE_S:
        return None
    return payload
