"""Signed, expiring tokens, and the secrets that sign them.

A token is an itsdangerous ``URLSafeTimedSerializer`` string carrying a user id
and a session id, stamped with the time it was signed. It proves who issued it
and when; whether its session is still alive is for the database to say (see
``server.auth.sessions``). Signatures are checked by itsdangerous with
``hmac.compare_digest``, in constant time.

Key rotation: the secrets are a list ordered **oldest first, newest last**, the
order itsdangerous expects. The newest signs; every one of them verifies. To
rotate, append a new secret, and drop the oldest once every token it signed
has expired (``auth.token_ttl`` later).
"""

from __future__ import annotations

import binascii
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
import orjson

from server.config import ConfigError, Settings
from server.errors import CommandError, ErrorCode

logger = logging.getLogger(__name__)

# Keeps these signatures from being valid for anything else signed with the
# same secrets.
SALT = "stagewire.auth.token"
# Tokens longer than this are not even decoded.
MAX_TOKEN_LENGTH = 4096
# A token stamped this far in the future still counts as new: nodes' clocks
# differ a little, and itsdangerous would call such a token expired.
CLOCK_SKEW = 30


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says."""

    user_id: int
    session_id: str
    issued_at: float
    expires_at: float


class TokenSigner:
    """Issues and reads tokens.

    Args:
        secrets: Signing secrets, oldest first; the last one signs.
        ttl: Seconds a token stays valid after it was signed.
        clock: Wall clock (``time.time``); tests pass a fake one.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        ttl: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets or not all(secrets):
            raise ConfigError("auth: at least one non-empty signing secret is needed")
        self.ttl = ttl
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(
            list(secrets), salt=SALT, signer=_ClockSigner, signer_kwargs={"clock": clock}
        )
        # What itsdangerous derives from the secrets on every call, derived once, newest first.
        signer = self._serializer.make_signer()
        # By name, hmac.digest is OpenSSL's one-shot HMAC; given itsdangerous's
        # function, it builds the inner and outer hashes in Python.
        self._digest_name = signer.digest_method().name
        self._keys = [signer.derive_key(key) for key in reversed(signer.secret_keys)]

    def issue(self, user_id: int, session_id: str) -> tuple[str, float]:
        """A new token and the unix time at which it expires."""
        token = self._serializer.dumps({"u": user_id, "s": session_id})
        # Read back rather than recomputed: the signer stamps whole seconds,
        # and the clock may have ticked over since.
        return token, self.read(token).expires_at

    def read(self, token: str) -> TokenClaims:
        """The claims of ``token``.

        Raises:
            CommandError: ``TOKEN_EXPIRED`` if the signature is good but too
                old, ``UNAUTHORIZED`` for anything else.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token")
        return self._read_current(token) or self._read_full(token)

    def _read_full(self, token: str) -> TokenClaims:
        """:meth:`read` by itsdangerous alone: every check, and the reason of a refusal."""
        try:
            payload, signed_at = self._serializer.loads(
                token, max_age=self.ttl, return_timestamp=True
            )
        except SignatureExpired as exc:
            payload, signed_at = self._accept_skewed(exc)
        except BadData:
            raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token") from None
        issued_at = signed_at.timestamp()
        return _claims(payload, issued_at, issued_at + self.ttl)

    def _read_current(self, token: str) -> TokenClaims | None:
        """The claims of a well-signed token within its age, or None to let itsdangerous decide.

        The same checks as ``URLSafeTimedSerializer.loads`` (signature in
        constant time with every secret, age in ``[0, ttl]``), without its
        per-call set-up: every connect checks a token, and that set-up was a
        fifth of a connect's CPU time. Anything else (a bad signature, an
        expired, skewed or compressed token) takes the full path, which says why.
        """
        try:
            raw = token.encode("ascii")
            value, _, signature = raw.rpartition(b".")
            payload, _, stamp = value.rpartition(b".")
            if not payload or payload.startswith(b"."):
                return None
            mac = _b64decode(signature)
            for key in self._keys:
                if hmac.compare_digest(hmac.digest(key, value, self._digest_name), mac):
                    break
            else:
                return None
            signed_at = int.from_bytes(_b64decode(stamp), "big")
            data = orjson.loads(_b64decode(payload))
        except ValueError:  # binascii.Error and orjson.JSONDecodeError among them
            return None
        if not 0 <= self._clock() - signed_at <= self.ttl:
            return None
        return _claims(data, float(signed_at), float(signed_at + self.ttl))

    def _accept_skewed(self, exc: SignatureExpired) -> tuple[Any, Any]:
        signed_at = exc.date_signed
        if exc.payload is not None and signed_at is not None and 0 < signed_at.timestamp() - self._clock() <= CLOCK_SKEW:
            try:
                return self._serializer.load_payload(exc.payload), signed_at
            except BadData:
                pass
        raise CommandError(ErrorCode.TOKEN_EXPIRED, "token expired") from None


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64decode(data: bytes) -> bytes:
    """itsdangerous's ``base64_decode`` (URL-safe, unpadded) without its per-call conversions."""
    return binascii.a2b_base64(data.translate(_URLSAFE) + b"=" * (-len(data) % 4))


class _ClockSigner(TimestampSigner):
    """A ``TimestampSigner`` that reads an injectable clock instead of ``time.time``."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def _claims(payload: Any, issued_at: float, expires_at: float) -> TokenClaims:
    # The signature is ours, so a bad shape means a bug or an old format.
    if not isinstance(payload, dict):
        raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token")
    user_id, session_id = payload.get("u"), payload.get("s")
    if type(user_id) is not int or not isinstance(session_id, str):
        raise CommandError(ErrorCode.UNAUTHORIZED, "invalid token")
    return TokenClaims(user_id, session_id, issued_at, expires_at)


def load_secrets(settings: Settings) -> list[str]:
    """The token signing secrets, oldest first, newest (the one that signs) last.

    ``auth.secrets`` wins when set, e.g. from the environment as
    ``STAGEWIRE_AUTH__SECRETS=old-secret,new-secret`` (comma separated, oldest
    first, newest last). Otherwise they are read from ``auth.secret_file`` (one
    per line, same order), which is created with one random secret and mode
    0600 on the first run. Nothing is ever taken from the source tree.
    """
    if settings.auth.secrets:
        return list(settings.auth.secrets)
    path = settings.path(settings.auth.secret_file)
    if not path.exists():
        _create_secret_file(path)
    elif path.stat().st_mode & 0o077:
        logger.warning("secret file %s is readable by other users; chmod 600 it", path)
    found = [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
    if not found:
        raise ConfigError(f"secret file {path} is empty")
    return found


def _create_secret_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written under a temporary name, then linked into place: link fails if
    # the file exists, so of two workers starting together exactly one
    # secret wins, and nobody ever reads a half-written file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            logger.info("generated a token signing secret in %s", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
