"""A worked example: an existing backend that lets Stagewire's users in and hears what they do.

It is not part of Stagewire and nothing imports it; it shows, in one file,
what a backend in any language does (docs/hooks.md):

* its own login (a form and a session cookie), as the site already had;
* ``POST /stagewire/connect``: Stagewire's connect proxy. The browser's
  cookie arrives with the call; the answer names the user and the channels to
  subscribe it to, or refuses (401);
* ``POST /stagewire/refresh``: the session is still good, for how long;
* ``POST /stagewire/rpc``: answers the ``rpc`` command (``whoami``);
* ``POST /stagewire/webhooks``: Stagewire's webhooks, signature checked
  (see verify_webhook.py), kept in memory and shown at ``GET /events``.

It uses aiohttp's Flask-like route decorators (aiohttp is already in
Stagewire's virtualenv); in Flask or FastAPI each route is the same few lines.
Run it beside a Stagewire that calls it::

    EXAMPLE_WEBHOOK_SECRET=change-me .venv/bin/python docs/examples/backend.py --port 9000

    STAGEWIRE_PROXY__CONNECT=http://127.0.0.1:9000/stagewire/connect \\
    STAGEWIRE_PROXY__REFRESH=http://127.0.0.1:9000/stagewire/refresh \\
    STAGEWIRE_PROXY__RPC=http://127.0.0.1:9000/stagewire/rpc \\
    STAGEWIRE_WEBHOOKS__0__URL=http://127.0.0.1:9000/stagewire/webhooks \\
    STAGEWIRE_WEBHOOKS__0__EVENTS=connect,disconnect,channel_occupied,channel_vacated,member_added,member_removed \\
    STAGEWIRE_WEBHOOKS__0__SECRET=change-me \\
    STAGEWIRE_SERVER__ALLOWED_ORIGINS=http://127.0.0.1:9000 \\
    .venv/bin/stagewire serve

then open http://127.0.0.1:9000/ and log in as alice (password "wonderland").
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import secrets
import time

from aiohttp import web

# The site's users (a real backend has its own table). Passwords only for the demo.
USERS = {
    "alice": {"password": "wonderland", "name": "Alice", "roles": ["admin"]},
    "bob": {"password": "builder", "name": "Bob", "roles": []},
}
SESSION_COOKIE = "session"
SESSION_TTL = 3600
TOLERANCE_S = 300

SESSIONS = web.AppKey("sessions", dict)
EVENTS = web.AppKey("events", list)
WEBHOOK_SECRET = web.AppKey("webhook_secret", str)
STAGEWIRE_WS = web.AppKey("stagewire_ws", str)

routes = web.RouteTableDef()


def verify_webhook(secret: str, body: bytes, signature: str | None) -> dict | None:
    """As docs/examples/verify_webhook.py: the payload if genuine and recent, else None."""
    if not signature:
        return None
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return None
    payload = json.loads(body)
    if abs(time.time() - payload["time_ms"] / 1000) > TOLERANCE_S:
        return None
    return payload


def current_user(request: web.Request) -> str | None:
    """Who the session cookie belongs to, as any page of the site would ask."""
    session = request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE, ""))
    if session is None or session["expires"] < time.time():
        return None
    return session["user"]


# -- the site's own pages -----------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    user = current_user(request)
    if user is None:
        return web.Response(content_type="text/html", text=LOGIN_PAGE)
    page = APP_PAGE.replace("{{name}}", html.escape(USERS[user]["name"]))
    return web.Response(content_type="text/html", text=page.replace("{{ws}}", request.app[STAGEWIRE_WS]))


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    user = USERS.get(str(form.get("username", "")))
    if user is None or not hmac.compare_digest(user["password"], str(form.get("password", ""))):
        return web.Response(status=401, content_type="text/html", text="wrong name or password")
    session = secrets.token_urlsafe(24)
    request.app[SESSIONS][session] = {"user": str(form["username"]), "expires": time.time() + SESSION_TTL}
    response = web.HTTPSeeOther("/")
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Lax", max_age=SESSION_TTL)
    raise response


# -- what Stagewire asks ------------------------------------------------------------------


@routes.post("/stagewire/connect")
async def stagewire_connect(request: web.Request) -> web.Response:
    user = current_user(request)  # the browser's cookie, forwarded by Stagewire
    if user is None:
        return web.json_response({"error": {"message": "not logged in"}}, status=401)
    info = USERS[user]
    return web.json_response({"result": {
        "user": {"id": user, "name": info["name"], "roles": info["roles"]},
        "channels": [f"user:{user}"],  # subscribed at once: the user's own notifications
        "expires_in": SESSION_TTL,
    }})


@routes.post("/stagewire/refresh")
async def stagewire_refresh(request: web.Request) -> web.Response:
    if current_user(request) is None:
        return web.json_response({"error": {"message": "session ended"}}, status=401)
    return web.json_response({"result": {"expires_in": SESSION_TTL}})


@routes.post("/stagewire/rpc")
async def stagewire_rpc(request: web.Request) -> web.Response:
    call = await request.json()
    if call["method"] == "whoami":
        user = call["user"]
        return web.json_response({"result": {"data": {"id": user, "name": USERS[user]["name"]}}})
    return web.json_response({"error": {"code": 1404, "message": f"no method {call['method']}"}})


@routes.post("/stagewire/webhooks")
async def stagewire_webhooks(request: web.Request) -> web.Response:
    body = await request.read()  # the raw bytes: the signature covers them exactly
    payload = verify_webhook(request.app[WEBHOOK_SECRET], body, request.headers.get("X-Stagewire-Signature"))
    if payload is None:
        return web.Response(status=401)
    for event in payload["events"]:
        request.app[EVENTS].append(event)
        print(f"{event['name']:<17} {event.get('channel', '-'):<24} {event.get('user', '')}", flush=True)
    del request.app[EVENTS][:-1000]
    return web.Response(status=204)


@routes.get("/events")
async def events(request: web.Request) -> web.Response:
    return web.json_response(request.app[EVENTS])


def make_app(webhook_secret: str, stagewire_ws: str = "ws://127.0.0.1:8080/ws") -> web.Application:
    app = web.Application()
    app[SESSIONS] = {}
    app[EVENTS] = []
    app[WEBHOOK_SECRET] = webhook_secret
    app[STAGEWIRE_WS] = stagewire_ws
    app.add_routes(routes)
    return app


LOGIN_PAGE = """<!doctype html><title>Example backend</title>
<form method="post" action="/login">
  <input id="username" name="username" placeholder="alice"> <input id="password" name="password" type="password">
  <button id="login">Log in</button>
</form>"""

# After login: a plain WebSocket to Stagewire. The browser sends the session
# cookie with the upgrade; connect carries no token, so Stagewire asks us.
APP_PAGE = """<!doctype html><title>Example backend</title>
<p>Hello {{name}}. Stagewire: <span id="state">connecting</span> as <span id="user"></span></p>
<pre id="log"></pre>
<script>
  const ws = new WebSocket("{{ws}}", ["stagewire.json"]);
  const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
  ws.onopen = () => ws.send(JSON.stringify({ id: 1, type: "connect" }));
  ws.onmessage = (event) => {
    for (const line of event.data.split("\\n")) {
      const message = JSON.parse(line);
      if (message.id === 1 && message.result) {
        document.getElementById("state").textContent = "connected";
        document.getElementById("user").textContent = message.result.user.name;
        ws.send(JSON.stringify({ id: 2, type: "rpc", method: "whoami" }));
      } else if (message.id === 1) {
        document.getElementById("state").textContent = "refused: " + message.error.message;
      } else if (message.id === 2) {
        log("rpc whoami: " + JSON.stringify(message.result || message.error));
      } else if (message.type === "pub") {
        log(message.channel + ": " + JSON.stringify(message.data));
      }
    }
  };
</script>"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--stagewire", default="ws://127.0.0.1:8080/ws", help="Stagewire's /ws URL for the page")
    args = parser.parse_args()
    secret = os.environ.get("EXAMPLE_WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set EXAMPLE_WEBHOOK_SECRET (the webhook's secret in Stagewire's config)")
    web.run_app(make_app(secret, args.stagewire), host="127.0.0.1", port=args.port)
