"""HTTP routes of accounts: register, login, refresh, logout, me.

=========================  ==========  ==============================================
Route                      Auth        Success
=========================  ==========  ==============================================
POST /api/auth/register    none        201 ``{"user"}``
POST /api/auth/login       none        200 ``{"token", "expires_in", "user"}``
POST /api/auth/refresh     Bearer      200 ``{"token", "expires_in", "user"}``
POST /api/auth/logout      Bearer      200 ``{}``; the session's sockets are closed
POST /api/auth/password    Bearer      200 ``{}``; the user's other sessions are revoked
GET  /api/me               Bearer      200 ``{"user"}``
=========================  ==========  ==============================================

``user`` is ``{"id", "username", "role"}``. Errors are described in
``server.api.errors``: 401 for bad credentials or tokens (the same body for
an unknown user and a wrong password), 409 for a taken name, 422 for invalid
fields, 429 with ``Retry-After`` after repeated failed logins.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models.user import User
from server.api.common import bearer_token, client_ip, json_response, parse_body
from server.appkeys import AUTH, NODE
from server.auth.identity import Identity
from server.auth.sessions import PASSWORD_MAX, PASSWORD_MIN, USERNAME_RE, check_password, check_username


class RegisterBody(BaseModel):
    model_config = ConfigDict(strict=True)

    # The schema extras document the rules (OpenAPI); the validators check them, with their own messages.
    username: Annotated[str, AfterValidator(check_username),
                        Field(json_schema_extra={"pattern": USERNAME_RE.pattern.join("^$")})]
    password: Annotated[str, AfterValidator(check_password),
                        Field(json_schema_extra={"minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX})]


class PasswordBody(BaseModel):
    model_config = ConfigDict(strict=True)

    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)]
    new_password: Annotated[str, Field(json_schema_extra={"minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX})]


class LoginBody(BaseModel):
    # Loose on purpose: a name that could never be registered is simply a
    # wrong one (401). The bound only caps the work one request can cause.
    model_config = ConfigDict(strict=True)

    username: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)]
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)]


def _user(user_id: int, username: str, role: str) -> dict[str, Any]:
    return {"id": user_id, "username": username, "role": role}


def _user_of(request: web.Request, user: User) -> dict[str, Any]:
    return _user(user.id, user.username, request.app[AUTH].role_of(user))


async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, RegisterBody)
    user = await request.app[AUTH].register(body.username, body.password)
    return json_response({"user": _user_of(request, user)}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginBody)
    token, expires_in, user = await request.app[AUTH].login(
        body.username, body.password, client_ip(request)
    )
    return json_response({"token": token, "expires_in": expires_in,
                          "user": _user_of(request, user)})


async def refresh(request: web.Request) -> web.Response:
    token, expires_in, user = await request.app[AUTH].refresh(bearer_token(request))
    return json_response({"token": token, "expires_in": expires_in,
                          "user": _user_of(request, user)})


async def logout(request: web.Request) -> web.Response:
    identity = await request.app[AUTH].logout(bearer_token(request))
    # The token is dead from now on, but sockets opened with it were checked
    # only when they connected.
    if NODE in request.app:
        await request.app[NODE].disconnect_session(identity.session_id)
    return json_response({})


async def change_password(request: web.Request) -> web.Response:
    body = await parse_body(request, PasswordBody)
    _, revoked = await request.app[AUTH].change_password(
        bearer_token(request), body.password, body.new_password, client_ip(request)
    )
    # Like a logout of each of the other sessions, on every node.
    if NODE in request.app:
        for session_id in revoked:
            await request.app[NODE].disconnect_session(session_id, "password changed")
    return json_response({})


async def me(request: web.Request) -> web.Response:
    identity: Identity = await request.app[AUTH].verify(bearer_token(request))
    return json_response({"user": _user(identity.user_id, identity.username, identity.role)})


routes: list[web.RouteDef] = [
    web.post("/api/auth/register", register),
    web.post("/api/auth/login", login),
    web.post("/api/auth/refresh", refresh),
    web.post("/api/auth/logout", logout),
    web.post("/api/auth/password", change_password),
    web.get("/api/me", me),
]
