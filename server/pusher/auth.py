"""``POST /pusher/auth``: Pusher signatures for logged-in Stagewire users.

For apps whose users are Stagewire accounts. The caller's token goes in the
``Authorization: Bearer`` header (as pusher-js's ``channelAuthorization`` and
``userAuthentication`` ``headers`` send it); the form (or JSON) body is what
pusher-js posts: ``socket_id``, and ``channel_name`` for a subscription.
``app_key`` names the app when more than one is configured.

* With ``channel_name`` (``private-``, ``private-encrypted-``, ``presence-``):
  the namespace's subscribe rule decides, exactly as for a native subscribe
  (403 otherwise). Presence members are the username, with
  ``{"username"}`` as user info; encrypted channels also get their
  ``shared_secret`` (the app needs ``encryption_master_key``).
* Without it: a user sign-in, ``user_data`` ``{"id": <username>, "user_info"}``.

``/pusher/user-auth`` (pusher-js's default sign-in endpoint) is the same route.
Errors are the server's JSON errors (401, 403, 404, 422).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from server.api.common import bearer_token, json_response
from server.appkeys import AUTH, NODE, PUSHER
from server.errors import CommandError, ErrorCode
from server.pusher import protocol as pp
from server.pusher import signing


async def _fields(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            raise CommandError(ErrorCode.BAD_REQUEST, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise CommandError(ErrorCode.BAD_REQUEST, "the body must be an object")
        return data
    return dict(await request.post())


async def pusher_auth(request: web.Request) -> web.Response:
    identity = await request.app[AUTH].verify(bearer_token(request))
    fields = await _fields(request)
    apps = request.app[PUSHER].apps
    key = fields.get("app_key") or request.query.get("app_key")
    listed = list(apps)
    app = apps.by_key(str(key)) if key else (listed[0] if len(listed) == 1 else None)
    if app is None:
        raise CommandError(ErrorCode.NOT_FOUND, "unknown app: name it with app_key", {"app_key": "unknown app"})
    socket_id = fields.get("socket_id")
    if not isinstance(socket_id, str) or not pp.SOCKET_ID_RE.match(socket_id):
        raise CommandError(ErrorCode.BAD_REQUEST, "invalid socket_id", {"socket_id": "expected <digits>.<digits>"})
    user_info = {"username": identity.username}
    channel = fields.get("channel_name")
    if channel is None:
        user_data = orjson.dumps({"id": identity.username, "user_info": user_info}).decode()
        return json_response({"auth": signing.user_auth(app, socket_id, user_data), "user_data": user_data})
    if not isinstance(channel, str) or not pp.valid_channel(channel) or not pp.is_private(channel):
        raise CommandError(ErrorCode.BAD_REQUEST, "only private- and presence- channels are signed",
                           {"channel_name": "a private-, private-encrypted- or presence- channel"})
    await request.app[NODE].authorize_subscribe(identity, f"{app.namespace}:{channel}")
    if pp.is_presence(channel):
        channel_data = orjson.dumps({"user_id": identity.username, "user_info": user_info}).decode()
        return json_response({"auth": signing.channel_auth(app, socket_id, channel, channel_data),
                              "channel_data": channel_data})
    out = {"auth": signing.channel_auth(app, socket_id, channel)}
    if pp.is_encrypted(channel):
        if not app.encryption_master_key:
            raise CommandError(ErrorCode.BAD_REQUEST, "this app has no encryption_master_key")
        out["shared_secret"] = signing.shared_secret(channel, app.encryption_master_key)
    return json_response(out)


routes = [web.post("/pusher/auth", pusher_auth), web.post("/pusher/user-auth", pusher_auth)]
