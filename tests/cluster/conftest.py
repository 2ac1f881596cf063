"""Real server processes sharing one Redis: the ``cluster`` fixture.

``cluster.start()`` runs ``python -m server`` (or any ``stagewire`` command
line) with the redis broker, through :class:`tests.serverproc.ServerProcess`:
a free 127.0.0.1 port, the log in ``server<N>.log``, and a return once
``/readyz`` answers. Every process of one test shares what a real deployment
shares: the Redis key prefix (unique per test, its keys deleted afterwards),
one SQLite file (so users and sessions are the same everywhere), the token
secrets and the API key. Presence entries live two seconds, so a dead
server's users leave within about three.

Everything is bounded: a server that is not ready within 20 s fails the test
with the tail of its log, and at teardown every process a test started (a
``--workers`` parent and its workers included) gets SIGTERM, then SIGKILL; one
that needed SIGKILL fails the test.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from tests.helpers import WSClient, connect_ws
from tests.serverproc import ServerProcess, server_command
from tests.services import require_redis

API_KEY = "cluster-api-key"
PASSWORD = "correct horse"
PRESENCE_TTL = 2.0
# The namespace of these tests: clients publish, joins/leaves and presence on, long history.
NAMESPACE = "team"
STOP_TIMEOUT = 10.0


class ClusterServer(ServerProcess):
    """A server of a :class:`Cluster`, with clients and API calls that use the cluster's accounts."""

    def __init__(self, cluster: Cluster, name: str, command: Sequence[str], env: dict[str, str]) -> None:
        super().__init__(cluster.tmp_path, env, command=command, name=name)
        self.cluster = cluster

    async def client(self, username: str, **kwargs: Any) -> WSClient:
        """A WebSocket client of ``username``, connected and authenticated here."""
        token = await self.cluster.token(username)
        client = await connect_ws(self.ws_url, close_timeout=1, **kwargs)
        self.cluster.clients.append(client)
        reply = await client.call("connect", token=token)
        assert "result" in reply, reply
        client.connect_result = reply["result"]
        return client

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with self.cluster.http.request(method, f"{self.url}{path}", json=body, headers=headers) as r:
            return r.status, await r.json()


class Cluster:
    """Starts server processes that share one Redis prefix, database and secrets."""

    def __init__(self, tmp_path: Path, redis_url: str, prefix: str, http: aiohttp.ClientSession) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.prefix = prefix
        self.http = http
        self.secret = f"cluster-secret-{secrets.token_hex(16)}"
        self.servers: list[ClusterServer] = []
        self.clients: list[WSClient] = []
        self._tokens: dict[str, str] = {}

    def settings(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """The ``STAGEWIRE_*`` settings every server of this test shares, plus ``overrides``."""
        ns = f"STAGEWIRE_NAMESPACES__{NAMESPACE.upper()}__"
        return {
            "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": "3",
            "STAGEWIRE_DATABASE__URL": f"sqlite://{self.tmp_path}/cluster.sqlite3",
            "STAGEWIRE_AUTH__SECRETS": self.secret,
            "STAGEWIRE_API__KEYS": API_KEY,
            "STAGEWIRE_BROKER__BACKEND": "redis",
            "STAGEWIRE_BROKER__REDIS_URL": self.redis_url,
            "STAGEWIRE_BROKER__PREFIX": self.prefix,
            "STAGEWIRE_BROKER__PRESENCE_TTL": str(PRESENCE_TTL),
            "STAGEWIRE_BROKER__RECONNECT_MAX_DELAY": "0.5",
            "STAGEWIRE_CLIENT__COMMAND_RATE": "100000",
            "STAGEWIRE_CLIENT__COMMAND_BURST": "100000",
            ns + "SUBSCRIBE": "authenticated",
            ns + "PUBLISH": "client",
            ns + "JOIN_LEAVE": "true",
            ns + "PRESENCE": "true",
            ns + "HISTORY_SIZE": "1000",
            **(overrides or {}),
        }

    async def start(self, args: Sequence[str] = (), env: dict[str, str] | None = None,
                    nodes: int = 1) -> ClusterServer:
        """Start ``python -m server *args`` and wait until ``nodes`` node(s) answer ``/readyz``.

        Start servers of one test one after the other: each applies the
        database migrations at start-up, and two must not race to do it.
        """
        name = f"server{len(self.servers) + 1}"
        server = ClusterServer(self, name, server_command(*args), self.settings(env))
        self.servers.append(server)
        return await server.start(nodes)

    async def pair(self, env: dict[str, str] | None = None) -> tuple[ClusterServer, ClusterServer]:
        """Two servers on two ports."""
        return await self.start(env=env), await self.start(env=env)

    async def token(self, username: str) -> str:
        """A token of ``username`` (registered on first use); the same for every server."""
        if username not in self._tokens:
            server = next(s for s in self.servers if s.running)
            body = {"username": username, "password": PASSWORD}
            async with self.http.post(f"{server.url}/api/auth/register", json=body) as r:
                assert r.status in (201, 409), await r.text()
            async with self.http.post(f"{server.url}/api/auth/login", json=body) as r:
                assert r.status == 200, await r.text()
                self._tokens[username] = (await r.json())["token"]
        return self._tokens[username]

    async def close(self) -> None:
        await asyncio.gather(*(asyncio.wait_for(c.close(), 3) for c in self.clients), return_exceptions=True)
        # Every server is stopped before a failure to stop one is reported.
        stopped = await asyncio.gather(*(s.stop(STOP_TIMEOUT) for s in self.servers), return_exceptions=True)
        for result in stopped:
            if isinstance(result, BaseException):
                raise result


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_redis()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A Redis client for the test itself (inspecting keys, killing connections)."""
    client = Redis.from_url(redis_url, socket_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
async def cluster(tmp_path: Path, redis_url: str, redis: Redis) -> AsyncIterator[Cluster]:
    prefix = f"swcluster-{secrets.token_hex(4)}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        cluster = Cluster(tmp_path, redis_url, prefix, http)
        try:
            yield cluster
        finally:
            await cluster.close()
            keys = [key async for key in redis.scan_iter(match=f"{prefix}.*", count=1000)]
            if keys:
                await redis.delete(*keys)


def channel_name(label: str) -> str:
    return f"{NAMESPACE}:{label}-{secrets.token_hex(3)}"


async def presence_seen_alike(a: ClusterServer, b: ClusterServer) -> tuple[str, list[WSClient]]:
    """alice on A and on B, bob on B, on one channel: both servers list the same members.

    Returns the channel and the clients (alice on A, alice on B, bob on B).
    """
    channel = channel_name("presence")
    clients = [await a.client("alice"), await b.client("alice"), await b.client("bob")]
    for client in clients:
        await client.result("subscribe", channel=channel)
    expected = {"users": [{"user": "alice", "connections": 2}, {"user": "bob", "connections": 1}]}
    for client in (clients[0], clients[2]):  # one on A, one on B
        assert await client.result("presence", channel=channel) == expected
        assert await client.result("presence_stats", channel=channel) == {"clients": 3, "users": 2}
    return channel, clients


async def pipeline(client: WSClient, channels: Sequence[str], tag: str, count: int, per_frame: int = 20) -> list[dict]:
    """Send ``count`` publishes, ``per_frame`` per frame, never waiting for a reply; the replies as they came.

    Publish ``i`` goes to ``channels[i % len(channels)]`` with data ``{"from": tag, "i": i}``.
    """
    for start in range(0, count, per_frame):
        frame = [{"id": i + 1, "type": "publish", "channel": channels[i % len(channels)], "data": {"from": tag, "i": i}}
                 for i in range(start, start + per_frame)]
        await client.send_raw("\n".join(orjson.dumps(m).decode() for m in frame))
    replies = []
    while len(replies) < count:
        message = await client.recv()
        if "id" in message:
            replies.append(message)
    return replies


async def told_and_resubscribed(clients: Sequence[WSClient], old: dict[str, dict[str, Any]], timeout: float) -> None:
    """Redis lost the streams of ``old``'s channels: each client is told (2500) of each, and resubscribes.

    ``old`` maps each channel to the result of the last publish before the
    loss; recovering from there answers ``recovered: false`` with a new epoch.
    """
    for client in clients:
        told = {}
        while len(told) < len(old):
            message = await client.recv(timeout=timeout)
            if message.get("type") == "unsubscribe":
                told[message["channel"]] = message
        for channel, push in told.items():
            assert push["code"] == 2500, push
            reply = await client.result("subscribe", channel=channel, recover=True,
                                        offset=old[channel]["offset"], epoch=old[channel]["epoch"])
            assert reply["recovered"] is False and reply["epoch"] != old[channel]["epoch"]


async def carries_on(publisher: WSClient, clients: Sequence[WSClient], channels: Sequence[str]) -> None:
    """A publication to each channel reaches every client, with the offset its publisher was given."""
    for channel in channels:
        position = await publisher.result("publish", channel=channel, data="after")
        for client in clients:
            push = await client.recv_push("pub", channel=channel, data="after")
            assert push["offset"] == position["offset"]
