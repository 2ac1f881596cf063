"""Pusher's signatures, pure: channel auth, user sign-in, HTTP API requests.

Every signature is the hex HMAC-SHA256 of a string with the app's secret,
and every comparison is constant-time (:func:`hmac.compare_digest`):

* subscribing to ``private-``/``presence-`` channels: ``auth`` is
  ``"<key>:" + HMAC(secret, "<socket_id>:<channel>[:<channel_data>]")``;
* user sign-in: ``"<key>:" + HMAC(secret, "<socket_id>::user::<user_data>")``;
* a webhook's body: ``X-Pusher-Signature`` is ``HMAC(secret, body)``;
* an HTTP API request: ``auth_signature`` is
  ``HMAC(secret, "<METHOD>\\n<path>\\n<query>")`` where the query is every
  parameter but ``auth_signature``, keys lower-cased, sorted, ``k=v``
  joined with ``&`` (values as decoded, not escaped); ``auth_timestamp``
  must be within 600 seconds of the server's clock and ``body_md5`` the MD5
  of a non-empty body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Mapping

from server.config import PusherAppSettings

MAX_CLOCK_SKEW = 600


class SignatureError(Exception):
    """An HTTP API request whose signature, key or timestamp is refused (401)."""


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign_bytes(secret: str, body: bytes) -> str:
    """A webhook's ``X-Pusher-Signature``: the hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def channel_auth(app: PusherAppSettings, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    return f"{app.key}:{sign(app.secret, text)}"


def user_auth(app: PusherAppSettings, socket_id: str, user_data: str) -> str:
    return f"{app.key}:{sign(app.secret, f'{socket_id}::user::{user_data}')}"


def auth_matches(presented: object, expected: str) -> bool:
    """Whether a client's ``auth`` is the expected ``key:signature``, in constant time."""
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def shared_secret(channel: str, master_key_base64: str) -> str:
    """The key of a ``private-encrypted-`` channel, as the Pusher server libraries derive it."""
    master = base64.b64decode(master_key_base64)
    return base64.b64encode(hashlib.sha256(channel.encode() + master).digest()).decode()


def check_request(
    app: PusherAppSettings, method: str, path: str, query: Mapping[str, str], body: bytes, now: float
) -> None:
    """Raise :class:`SignatureError` unless the request is signed by ``app``."""
    params = {k.lower(): v for k, v in query.items()}
    if not hmac.compare_digest(params.get("auth_key", "").encode(), app.key.encode()):
        raise SignatureError("unknown auth_key")
    if params.get("auth_version", "1.0") != "1.0":
        raise SignatureError("unsupported auth_version")
    try:
        timestamp = int(params.get("auth_timestamp", ""))
    except ValueError:
        raise SignatureError("auth_timestamp is required") from None
    if abs(now - timestamp) > MAX_CLOCK_SKEW:
        raise SignatureError(
            f"Timestamp expired: given timestamp ({timestamp}) not within {MAX_CLOCK_SKEW}s of server time ({int(now)})"
        )
    if body:
        if not hmac.compare_digest(params.get("body_md5", "").encode(), hashlib.md5(body).hexdigest().encode()):
            raise SignatureError("body_md5 does not match the body")
    signature = params.pop("auth_signature", "")
    text = "\n".join([method, path, "&".join(f"{k}={v}" for k, v in sorted(params.items()))])
    if not hmac.compare_digest(signature.encode(), sign(app.secret, text).encode()):
        raise SignatureError("Invalid signature: you should have sent HmacSHA256Hex(secret, string_to_sign)")
