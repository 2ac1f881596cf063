"""``ServerAPI`` and the token helpers against a live server."""

from __future__ import annotations

import pytest
from stagewire_client import CannotConnect, ErrorCode, ServerAPI, StagewireError, login, refresh_token

from tests.client.helpers import closed_port, eventually, next_pub
from tests.conftest import API_KEY


async def test_publish_broadcast_channels_and_disconnect(stagewire, sdk) -> None:
    client = await sdk(stagewire, "alice", reconnect=False)
    sub = await client.subscribe("news:api")
    async with ServerAPI(stagewire.url, API_KEY) as api:
        position = await api.publish("news:api", {"n": 1}, idempotency_key="k1")
        again = await api.publish("news:api", {"n": 1}, idempotency_key="k1")
        assert position == again and (position.offset, position.epoch) == (1, sub.epoch)
        pub = await next_pub(sub)
        assert (pub.data, pub.info) == ({"n": 1}, None)

        results = await api.broadcast(["news:api", "nope:x"], "both")
        assert [r.channel for r in results] == ["news:api", "nope:x"]
        assert results[0].position is not None and results[0].position.offset == 2
        assert results[1].error is not None and results[1].error.code is ErrorCode.UNKNOWN_CHANNEL

        assert await api.channels() == {"news:api": 1}
        await api.disconnect("alice", reason="maintenance")
    await eventually(lambda: not client.connected, "the disconnect")


async def test_errors_of_the_server_api(stagewire) -> None:
    async with ServerAPI(stagewire.url, API_KEY) as api:
        with pytest.raises(StagewireError) as unknown:
            await api.publish("nope:x", 1)
        assert unknown.value.code is ErrorCode.UNKNOWN_CHANNEL
        with pytest.raises(StagewireError) as invalid:
            await api.publish("x", 1)
        assert invalid.value.code is ErrorCode.BAD_REQUEST and invalid.value.fields
    async with ServerAPI(stagewire.url, "wrong-key") as api:
        with pytest.raises(StagewireError) as wrong:
            await api.publish("news:x", 1)
        assert wrong.value.code is ErrorCode.UNAUTHORIZED


async def test_unreachable_or_foreign_servers_raise_cannot_connect(stagewire) -> None:
    async with ServerAPI(f"http://127.0.0.1:{closed_port()}", API_KEY) as api:
        with pytest.raises(CannotConnect, match="connection refused"):
            await api.channels()
    async with ServerAPI(stagewire.url + "/elsewhere", API_KEY) as api:
        with pytest.raises(CannotConnect, match="HTTP 404"):
            await api.channels()


async def test_login_and_refresh_give_tokens_the_client_accepts(stagewire, sdk) -> None:
    await stagewire.register("alice")
    first = await login(stagewire.ws_url, "alice", "correct horse")
    assert first.user["username"] == "alice" and first.expires_in > 3000
    assert first.token not in repr(first)
    second = await refresh_token(stagewire.url, first.token)
    client = await sdk(stagewire, token=second.token)
    assert client.info is not None and client.info.user["username"] == "alice"
    with pytest.raises(StagewireError) as wrong:
        await login(stagewire.url, "alice", "wrong password")
    assert wrong.value.code is ErrorCode.UNAUTHORIZED
