"""Real server processes sharing one Redis: the ``cluster`` fixture.

``cluster.start()`` runs ``python -m server`` (or any ``stagewire`` command
line) on a free 127.0.0.1 port with the redis broker and returns a
:class:`ServerProcess` once ``/readyz`` answers. Every process of one test
shares what a real deployment shares: the Redis key prefix (unique per test,
its keys deleted afterwards), one SQLite file (so users and sessions are the
same everywhere), the token secrets and the API key. Presence entries live two
seconds, so a dead server's users leave within about three.

Everything is bounded: a server that is not ready within 20 s fails the test
with the tail of its log, and at teardown every process a test started (a
``--workers`` parent and its workers included) gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.helpers import WSClient, connect_ws
from tests.services import require_redis

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
API_KEY = "cluster-api-key"
PASSWORD = "correct horse"
PRESENCE_TTL = 2.0
# The namespace of these tests: clients publish, joins/leaves and presence on, long history.
NAMESPACE = "team"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """One ``python -m server`` process (for ``--workers``, the parent)."""

    def __init__(self, cluster: Cluster, name: str, port: int, proc: asyncio.subprocess.Process,
                 log_path: Path) -> None:
        self.cluster = cluster
        self.name = name
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.url = f"http://{HOST}:{port}"
        self.ws_url = f"ws://{HOST}:{port}/ws"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def descendants(self) -> list[int]:
        """Pids of the process's children, grandchildren, ... (workers of a parent)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            found += [int(c) for c in children]
            todo += [int(c) for c in children]
        return found

    async def ready_nodes(self, count: int = 1) -> set[str]:
        """Wait until ``/readyz`` answered 200 from ``count`` distinct nodes; their ids."""
        nodes: set[str] = set()
        deadline = time.monotonic() + READY_TIMEOUT
        while len(nodes) < count:
            # A new connection each time, so SO_REUSEPORT may pick another worker.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                try:
                    async with http.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            nodes.add((await r.json())["node"])
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} is not ready (exit {self.proc.returncode}):\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return nodes

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

    def send_signal(self, signum: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL for whatever of it is left after STOP_TIMEOUT."""
        pids = self.descendants()
        self.send_signal(signal.SIGTERM)
        try:
            await self.wait()
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        for pid in pids:  # workers outliving their parent
            if _is_our_server(pid):
                os.kill(pid, signal.SIGKILL)


def _is_our_server(pid: int) -> bool:
    try:
        return b"server" in Path(f"/proc/{pid}/cmdline").read_bytes() and Path(f"/proc/{pid}/cwd").resolve() == ROOT
    except OSError:
        return False


class Cluster:
    """Starts server processes that share one Redis prefix, database and secrets."""

    def __init__(self, tmp_path: Path, redis_url: str, prefix: str, http: aiohttp.ClientSession) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.prefix = prefix
        self.http = http
        self.secret = f"cluster-secret-{secrets.token_hex(16)}"
        self.servers: list[ServerProcess] = []
        self.clients: list[WSClient] = []
        self._tokens: dict[str, str] = {}

    def env(self, port: int, overrides: dict[str, str] | None = None) -> dict[str, str]:
        ns = f"STAGEWIRE_NAMESPACES__{NAMESPACE.upper()}__"
        # Only our STAGEWIRE_* settings: the caller's environment must not leak in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWIRE_")}
        return {
            **inherited,
            "STAGEWIRE_SERVER__HOST": HOST,
            "STAGEWIRE_SERVER__PORT": str(port),
            "STAGEWIRE_SERVER__SHUTDOWN_TIMEOUT": "3",
            "STAGEWIRE_DATABASE__URL": f"sqlite://{self.tmp_path}/cluster.sqlite3",
            "STAGEWIRE_AUTH__SECRETS": self.secret,
            "STAGEWIRE_AUTH__PASSWORD_TIME_COST": "1",
            "STAGEWIRE_AUTH__PASSWORD_MEMORY_COST": "1024",
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
                    nodes: int = 1) -> ServerProcess:
        """Start ``python -m server *args`` and wait until ``nodes`` node(s) answer ``/readyz``.

        Start servers of one test one after the other: each applies the
        database migrations at start-up, and two must not race to do it.
        """
        port = free_port()
        name = f"server{len(self.servers) + 1}"
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("wb") as log:  # a file, not a pipe that could fill up and block
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", *args, cwd=ROOT, env=self.env(port, env),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        server = ServerProcess(self, name, port, proc, log_path)
        self.servers.append(server)
        await server.ready_nodes(nodes)
        return server

    async def pair(self, env: dict[str, str] | None = None) -> tuple[ServerProcess, ServerProcess]:
        """Two servers on two ports."""
        return await self.start(env=env), await self.start(env=env)

    async def token(self, username: str) -> str:
        """A token of ``username`` (registered on first use); the same for every server."""
        if username not in self._tokens:
            server = next(s for s in self.servers if s.proc.returncode is None)
            body = {"username": username, "password": PASSWORD}
            async with self.http.post(f"{server.url}/api/auth/register", json=body) as r:
                assert r.status in (201, 409), await r.text()
            async with self.http.post(f"{server.url}/api/auth/login", json=body) as r:
                assert r.status == 200, await r.text()
                self._tokens[username] = (await r.json())["token"]
        return self._tokens[username]

    async def close(self) -> None:
        await asyncio.gather(*(asyncio.wait_for(c.close(), 3) for c in self.clients), return_exceptions=True)
        await asyncio.gather(*(s.stop() for s in self.servers))


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
