"""docs/examples/backend.py with a real Stagewire: it authorizes connects by cookie, answers rpc, gets webhooks."""

from __future__ import annotations

import pytest

from server.config import load_settings
from tests.conftest import make_settings
from tests.helpers import connect_ws
from tests.hooks.example import ExampleBackend


@pytest.fixture
async def example():
    example = await ExampleBackend().start()
    yield example
    await example.stop()


def example_settings(tmp_path, example: ExampleBackend):
    # The docstring's STAGEWIRE_* variables, read the way the server reads them.
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    env = load_settings(empty, environ=example.stagewire_env())
    return make_settings(tmp_path, server={"stats_interval": 0}).replace(
        proxy={"connect": env.proxy.connect, "refresh": env.proxy.refresh, "rpc": env.proxy.rpc},
        webhooks=[{"url": h.url, "events": list(h.events), "secret": h.secret} for h in env.webhooks],
        hooks={"retry_min_delay": 0.05, "poll_interval": 0.2, "grace": 0.2},
    )


async def wait_for_event(example: ExampleBackend, name: str, user: str) -> dict:
    import asyncio

    for _ in range(200):
        found = [e for e in example.events if e["name"] == name and e.get("user") == user]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} of {user}: {example.events}")


async def test_the_example_backend_lets_its_logged_in_users_connect(make_stagewire, tmp_path, example):
    sw = await make_stagewire(example_settings(tmp_path, example))
    cookie = await example.login("alice", "wonderland")
    client = await connect_ws(sw.ws_url, additional_headers={"Cookie": cookie})
    result = await client.result("connect")
    assert result["user"]["name"] == "Alice" and result["user"]["id"] == "alice"
    assert result["user"]["role"] == "admin"
    assert set(result["subscriptions"]) == {"user:alice"}
    assert 3500 < result["expires_in"] <= 3600
    assert await client.result("rpc", method="whoami") == {"data": {"id": "alice", "name": "Alice"}}
    await client.assert_error(1404, "rpc", method="nope")
    assert (await sw.api("POST", "/api/publish", {"channel": "user:alice", "data": "you have mail"}))[0] == 200
    assert (await client.recv_push("pub", channel="user:alice"))["data"] == "you have mail"
    connect = await wait_for_event(example, "connect", "alice")
    assert connect["client"] == result["client"]
    await wait_for_event(example, "member_added", "alice")
    await client.close()
    await wait_for_event(example, "disconnect", "alice")
    await wait_for_event(example, "member_removed", "alice")


async def test_the_example_backend_refuses_a_stranger(make_stagewire, tmp_path, example):
    sw = await make_stagewire(example_settings(tmp_path, example))
    client = await connect_ws(sw.ws_url, additional_headers={"Cookie": "session=forged"})
    reply = await client.call("connect")
    assert reply["error"] == {"code": 101, "message": "not logged in"}
    push, code = await client.recv_disconnect()
    assert code == 4501
