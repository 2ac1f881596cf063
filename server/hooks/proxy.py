"""``BackendProxy``: the backend decides connects, refreshes, subscribes, publishes and RPCs.

Every call is an HTTP POST of a JSON object to the URL configured for it
(``[proxy]``, or per namespace ``subscribe_proxy``/``publish_proxy``), through
the node's pooled :class:`~server.hooks.http.BackendHttp`, with ``[proxy]
timeout``. The headers named in ``[proxy] headers`` (cookies, by default)
are copied from the client's ``/ws`` request onto every call made for that
connection, so the backend's own session middleware sees the user as it does
for its pages. With ``[proxy] secret`` the body is signed like a webhook's.

The backend answers ``200`` with ``{"result": {...}}`` (allow) or
``{"error": {"message": ...}}`` (refuse); ``401`` and ``403`` refuse too,
whatever their body. Anything else (a timeout, no connection, a 5xx, another
status, a body of another shape) is the backend failing: the client gets
``UNAVAILABLE`` (112, temporary) at once, never a hang, and the failure is
counted in ``/metrics``. The shapes are in docs/hooks.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import orjson
import pydantic

from server.auth.identity import Identity
from server.config import NamespaceSettings, ProxySettings
from server.errors import CloseCode, CommandError, ErrorCode
from server.hooks import signing
from server.hooks.base import Connected
from server.hooks.http import BackendFailure, BackendHttp

if TYPE_CHECKING:
    from server.auth.sessions import Authenticator
    from server.connection import Connection, Spawn

log = logging.getLogger("stagewire.hooks.proxy")

USER_ID = r"^[A-Za-z0-9_.@=,:\-]{1,128}$"
#: Error codes a backend may give its own meaning in an ``rpc`` answer; others become 103.
APP_CODES = range(1000, 2000)
#: Seconds between refresh attempts while the refresh proxy fails (bounded by the expiry).
REFRESH_RETRY = 5.0


class _Answer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class ProxyUser(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")
    id: str = pydantic.Field(pattern=USER_ID)
    name: str | None = pydantic.Field(default=None, max_length=256)
    roles: list[pydantic.constr(max_length=64)] = pydantic.Field(default_factory=list, max_length=64)  # type: ignore[valid-type]

    @pydantic.field_validator("id", mode="before")
    @classmethod
    def _number_ids(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ConnectResult(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")
    user: ProxyUser
    channels: list[pydantic.constr(min_length=3, max_length=255)] = pydantic.Field(  # type: ignore[valid-type]
        default_factory=list, max_length=512)
    expires_in: float | None = pydantic.Field(default=None, gt=0)


class RefreshResult(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")
    expires_in: float | None = pydantic.Field(default=None, gt=0)


class ApplicationError(CommandError):
    """An RPC refusal carrying the backend's own code (1000-1999) and message."""

    def __init__(self, code: int, message: str, temporary: bool) -> None:
        super().__init__(ErrorCode.PERMISSION_DENIED, message)
        self.app_code = code
        self.temporary = temporary

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.app_code, "message": self.message}
        if self.temporary:
            out["temporary"] = True
        return out


def unavailable(kind: str) -> CommandError:
    return CommandError(ErrorCode.UNAVAILABLE, f"the {kind} backend is unavailable")


class BackendProxy:
    """The :class:`~server.hooks.base.Proxy` that asks the backend; see the module docstring.

    Args:
        settings: ``[proxy]``.
        namespaces: the namespaces, for their ``subscribe_proxy``/``publish_proxy``.
        http: the node's pooled client.
        set_identity: gives a connection its refreshed identity (``Node.set_identity``).
        spawn: runs the refresh timers as the node's background tasks.
    """

    def __init__(
        self,
        settings: ProxySettings,
        namespaces: Mapping[str, NamespaceSettings],
        http: BackendHttp,
        set_identity: Callable[[Connection, Identity], None],
        spawn: Spawn,
    ) -> None:
        self.settings = settings
        self._namespaces = namespaces
        self._http = http
        self._set_identity = set_identity
        self._spawn = spawn
        self._allowed = {name.lower() for name in settings.headers}
        self._keeps_headers = bool(settings.refresh or settings.subscribe or settings.publish or settings.rpc or any(
            ns.subscribe_proxy not in ("", "off") or ns.publish_proxy not in ("", "off") for ns in namespaces.values()))
        # Per connection: the headers copied from its /ws request, and its refresh timer.
        self._headers: dict[str, dict[str, str]] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}

    # -- Proxy ------------------------------------------------------------------------

    async def authenticate(
        self, auth: Authenticator, conn: Connection, headers: Mapping[str, str], token: str | None, data: Any
    ) -> Connected:
        # Copied only where a proxy call will send them: a connect with a token reads no header.
        forwarded = (
            {name: value for name, value in headers.items() if name.lower() in self._allowed}
            if self._allowed and (token is None or self._keeps_headers) else {}
        )
        if token is not None:
            if not self.settings.tokens:
                raise CommandError(ErrorCode.UNAUTHORIZED, "connect without a token: the backend's session decides")
            connected = Connected(await auth.verify(token))
        elif not self.settings.connect:
            raise CommandError(ErrorCode.UNAUTHORIZED, "a token is required", {"token": "required"})
        else:
            result = await self._decide("connect", self.settings.connect, {
                "client": conn.id, "transport": "websocket", "encoding": "msgpack" if conn.encoding.binary else "json",
                "remote": conn.remote, "data": data,
            }, forwarded, ErrorCode.UNAUTHORIZED)
            connected = self._connected(conn, _parse(ConnectResult, result, "connect"))
        if self._keeps_headers:
            self._headers[conn.id] = forwarded
        return connected

    async def refresh(self, conn: Connection) -> Identity:
        identity = conn.identity
        if identity is None or not identity.proxied or not self.settings.refresh:
            raise CommandError(ErrorCode.BAD_REQUEST, "a token is required", {"token": "required"})
        return await self._refreshed(conn, identity)

    async def authorize_subscribe(self, conn: Connection, channel: str, ns: NamespaceSettings) -> None:
        url = _url(ns.subscribe_proxy, self.settings.subscribe)
        if url is not None:
            await self._decide("subscribe", url, {**self._who(conn), "channel": channel},
                               self._headers.get(conn.id, {}), ErrorCode.PERMISSION_DENIED)

    async def authorize_publish(self, conn: Connection, channel: str, ns: NamespaceSettings, data: Any) -> Any:
        url = _url(ns.publish_proxy, self.settings.publish)
        if url is None:
            return data
        result = await self._decide("publish", url, {**self._who(conn), "channel": channel, "data": data},
                                    self._headers.get(conn.id, {}), ErrorCode.PERMISSION_DENIED)
        return result["data"] if "data" in result else data

    async def rpc(self, conn: Connection, method: str, data: Any) -> Any:
        if not self.settings.rpc:
            raise CommandError(ErrorCode.METHOD_NOT_FOUND, "no RPC backend is configured ([proxy] rpc)")
        result = await self._decide("rpc", self.settings.rpc, {**self._who(conn), "method": method, "data": data},
                                    self._headers.get(conn.id, {}), ErrorCode.PERMISSION_DENIED, app_codes=True)
        return result.get("data")

    # -- the connection's life ----------------------------------------------------------

    def connected(self, conn: Connection) -> None:
        """Arm the refresh of a proxied identity that expires (a listener of the ``connect`` event)."""
        self._arm(conn)

    def forget(self, conn: Connection) -> None:
        """The connection is gone (a listener of the ``disconnect`` event)."""
        self._headers.pop(conn.id, None)
        timer = self._timers.pop(conn.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _arm(self, conn: Connection) -> None:
        identity = conn.identity
        if identity is None or not identity.proxied or not self.settings.refresh or math.isinf(identity.expires_at):
            return
        left = identity.expires_at - time.time()
        delay = max(0.0, left - self.settings.refresh_ahead) if left > 2 * self.settings.refresh_ahead else left / 2
        old = self._timers.pop(conn.id, None)
        if old is not None and old is not asyncio.current_task():
            old.cancel()
        self._timers[conn.id] = self._spawn(self._refresh_later(conn, delay))

    async def _refresh_later(self, conn: Connection, delay: float) -> None:
        await asyncio.sleep(delay)
        while True:
            identity = conn.identity
            if identity is None or self._timers.get(conn.id) is not asyncio.current_task():
                return  # gone, or refreshed meanwhile by the client's own refresh command
            try:
                await self._refreshed(conn, identity)  # arms the next refresh
                return
            except CommandError as exc:
                if exc.code is not ErrorCode.UNAVAILABLE:
                    conn.close(CloseCode.TOKEN_EXPIRED, "session expired")
                    return
            left = identity.expires_at - time.time()
            if left <= 0:
                return  # the connection's own expiry closes it (4003)
            await asyncio.sleep(min(REFRESH_RETRY, left / 2))

    async def _refreshed(self, conn: Connection, identity: Identity) -> Identity:
        result = await self._decide("refresh", self.settings.refresh, {**self._who(conn)},
                                    self._headers.get(conn.id, {}), ErrorCode.TOKEN_EXPIRED)
        parsed = _parse(RefreshResult, result, "refresh")
        expires_at = math.inf if parsed.expires_in is None else time.time() + parsed.expires_in
        fresh = Identity(identity.user_id, identity.username, identity.role, identity.session_id, expires_at,
                         identity.name, identity.roles, identity.proxied)
        self._set_identity(conn, fresh)
        self._arm(conn)
        return fresh

    # -- calls --------------------------------------------------------------------------

    def _connected(self, conn: Connection, result: ConnectResult) -> Connected:
        user = result.user
        expires_at = math.inf if result.expires_in is None else time.time() + result.expires_in
        role = "admin" if "admin" in user.roles else "user"
        identity = Identity(0, user.id, role, f"proxy:{conn.id}", expires_at, user.name, tuple(user.roles), True)
        return Connected(identity, tuple(result.channels))

    async def _decide(self, kind: str, url: str, request: dict[str, Any], headers: Mapping[str, str],
                      refusal: ErrorCode, app_codes: bool = False) -> dict[str, Any]:
        """POST one decision; the ``result`` object, or a refusal / UNAVAILABLE error."""
        body = orjson.dumps({**request, "time_ms": int(time.time() * 1000)}, default=str)
        call_headers = dict(headers)
        if self.settings.secret:
            call_headers[signing.HEADER] = signing.sign(self.settings.secret, body)
        try:
            answer = await self._http.post(kind, url, body, call_headers, self.settings.timeout)
        except BackendFailure as exc:
            log.warning("%s proxy failed: %s", kind, exc.detail)
            raise unavailable(kind) from None
        if answer.status in (401, 403):
            raise CommandError(refusal, _refusal_message(answer.body, kind))
        parsed: _Answer | None = None
        if answer.status == 200:
            try:
                parsed = _Answer.model_validate(orjson.loads(answer.body))
            except (orjson.JSONDecodeError, pydantic.ValidationError):
                parsed = None
        if parsed is None or (parsed.result is None) == (parsed.error is None):
            self._http.fail(kind, "invalid")
            log.warning("%s proxy %s answered %d with an unexpected body", kind, url, answer.status)
            raise unavailable(kind)
        if parsed.error is not None:
            message = str(parsed.error.get("message") or f"refused by the {kind} backend")[:500]
            code = parsed.error.get("code")
            if app_codes and isinstance(code, int) and code in APP_CODES:
                raise ApplicationError(code, message, parsed.error.get("temporary") is True)
            raise CommandError(refusal, message)
        assert parsed.result is not None
        return parsed.result

    @staticmethod
    def _who(conn: Connection) -> dict[str, Any]:
        identity = conn.identity
        return {"client": conn.id, "user": identity.username if identity else None}


def _url(own: str, default: str) -> str | None:
    if own == "off":
        return None
    return own or default or None


def _parse(model: type[pydantic.BaseModel], result: dict[str, Any], kind: str) -> Any:
    try:
        return model.model_validate(result)
    except pydantic.ValidationError as exc:
        log.warning("%s proxy answered an invalid result: %s", kind, exc.errors(include_url=False)[:3])
        raise unavailable(kind) from None


def _refusal_message(body: bytes, kind: str) -> str:
    try:
        error = orjson.loads(body).get("error", {})
        return str(error.get("message"))[:500] if isinstance(error, dict) and error.get("message") else \
            f"refused by the {kind} backend"
    except (orjson.JSONDecodeError, AttributeError):
        return f"refused by the {kind} backend"
