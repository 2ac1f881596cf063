"""POST /pusher/auth: Pusher signatures for Stagewire accounts, under the namespace's rules."""

from __future__ import annotations

import json

from tests.conftest import NAMESPACES
from tests.pusher.helpers import APP, KEY, NAMESPACE, PUSHER_NAMESPACE, sign
from tests.conftest import make_settings


async def auth(server, token: str | None, **form: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with server.http.post(f"{server.url}/pusher/auth", data=form, headers=headers) as r:
        return r.status, await r.json()


async def test_private_and_presence_signatures_for_a_logged_in_user(pusher_app, pusher_client):
    token = await pusher_app.token("erin")
    client = await pusher_client()
    status, body = await auth(pusher_app, token, socket_id=client.socket_id, channel_name="private-e")
    assert status == 200 and body == {"auth": f"{KEY}:{sign(f'{client.socket_id}:private-e')}"}
    status, body = await auth(pusher_app, token, socket_id=client.socket_id, channel_name="presence-e")
    assert status == 200 and json.loads(body["channel_data"]) == {"user_id": "erin", "user_info": {"username": "erin"}}
    await client.send("pusher:subscribe", {"channel": "presence-e", **body})
    ok = await client.expect("pusher_internal:subscription_succeeded", "presence-e")
    assert json.loads(ok["data"])["presence"]["ids"] == ["erin"]
    status, body = await auth(pusher_app, token, socket_id=client.socket_id)  # a sign-in
    assert status == 200 and json.loads(body["user_data"])["id"] == "erin"
    await client.send("pusher:signin", body)
    await client.expect("pusher:signin_success")


async def test_refusals(pusher_app):
    token = await pusher_app.token("erin")
    assert (await auth(pusher_app, None, socket_id="1.2", channel_name="private-e"))[0] == 401
    assert (await auth(pusher_app, "bad-token", socket_id="1.2", channel_name="private-e"))[0] == 401
    assert (await auth(pusher_app, token, socket_id="nope", channel_name="private-e"))[0] == 422
    assert (await auth(pusher_app, token, socket_id="1.2", channel_name="public"))[0] == 422


async def test_the_namespace_rules_apply(make_stagewire, tmp_path):
    settings = make_settings(tmp_path, pusher={"apps": [APP]},
                             namespaces={**NAMESPACES, NAMESPACE: {**PUSHER_NAMESPACE, "subscribe": "admin"}})
    server = await make_stagewire(settings)
    user, admin = await server.token("plain"), await server.token("root")  # root is an admin in tests
    assert (await auth(server, user, socket_id="1.2", channel_name="private-ops"))[0] == 403
    assert (await auth(server, admin, socket_id="1.2", channel_name="private-ops"))[0] == 200
