"""A Redis Cluster of the test's own: three masters on free loopback ports.

``PrivateCluster`` starts three ``redis-server --cluster-enabled yes``
processes in the test's directory with nothing on disk, joins them with
``redis-cli --cluster create ... --cluster-replicas 0``, and waits until every
node reports ``cluster_state:ok``. It can move a hash slot from one master to
another, keys included, as ``redis-cli --cluster reshard`` does one slot at a
time, and restart every node empty. The processes are killed and their
directory removed at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.private_redis import _free_port
from tests.services import REQUIRE_ENV

START_TIMEOUT = 20.0
MASTERS = 3


def require_cluster_binaries() -> tuple[str, str]:
    """``redis-server`` and ``redis-cli``; skips (fails with STAGEWIRE_REQUIRE_SERVICES=1) without them."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        reason = "redis-server and redis-cli are needed: the test runs a Redis Cluster of its own"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    return server, cli


class PrivateCluster:
    """Three Redis Cluster masters on ``127.0.0.1``, slots split evenly by ``redis-cli``."""

    def __init__(self, directory: Path, server: str, cli: str) -> None:
        self.directory = directory
        self.server = server
        self.cli = cli
        self.ports = [_free_port() for _ in range(MASTERS)]
        # Bus ports of their own: the default (port + 10000) may not exist for an ephemeral port.
        self.bus_ports = [_free_port() for _ in range(MASTERS)]
        self.nodes = [f"127.0.0.1:{port}" for port in self.ports]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._proc_of: dict[int, subprocess.Popen[bytes]] = {}  # by port
        self.replicas: list[int] = []

    def start(self) -> None:
        """Start the masters, form the cluster, and wait for ``cluster_state:ok`` everywhere."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for port, bus_port in zip(self.ports, self.bus_ports):
            self._spawn(port, bus_port)
        for port in self.ports:
            self._wait(port, lambda info: True)
        create = subprocess.run(
            [self.cli, "--cluster", "create", *self.nodes, "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=START_TIMEOUT,
        )
        if create.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {create.stdout.decode(errors='replace')}")
        for port in self.ports:
            self._wait(port, lambda info: "cluster_state:ok" in info and f"cluster_known_nodes:{MASTERS}" in info)

    def add_replica(self, master: int) -> int:
        """Start one more node as a replica of the master on port ``master``; returns its port."""
        port, bus_port = _free_port(), _free_port()
        self._spawn(port, bus_port)
        self._wait(port, lambda info: True)
        master_bus = self.bus_ports[self.ports.index(master)]
        with SyncRedis(host="127.0.0.1", port=master, socket_timeout=5) as client:
            master_id = _text(client.execute_command("CLUSTER", "MYID"))
        with SyncRedis(host="127.0.0.1", port=port, socket_timeout=5) as client:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", master, master_bus)
            deadline = time.monotonic() + START_TIMEOUT
            while master_id not in _text(client.execute_command("CLUSTER", "NODES")):
                if time.monotonic() > deadline:
                    raise AssertionError("the replica never learnt of its master")
                time.sleep(0.05)
            client.execute_command("CLUSTER", "REPLICATE", master_id)
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise AssertionError("the replica never synced")
                time.sleep(0.05)
        # Every master must know it as a replica before it can win a failover vote.
        for other in self.ports:
            with SyncRedis(host="127.0.0.1", port=other, socket_timeout=5) as client:
                while f":{port}@" not in _text(client.execute_command("CLUSTER", "REPLICAS", master_id)):
                    if time.monotonic() > deadline:
                        raise AssertionError("the masters never learnt of the replica")
                    time.sleep(0.05)
        self._wait(port, lambda info: "cluster_state:ok" in info)
        self.replicas.append(port)
        return port

    def failover(self, replica: int) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it becomes the master of its master's slots."""
        with SyncRedis(host="127.0.0.1", port=replica, socket_timeout=5) as client:
            deadline = time.monotonic() + START_TIMEOUT
            while client.info("replication").get("role") != "master":
                if time.monotonic() > deadline:
                    raise AssertionError("the failover did not happen")
                client.execute_command("CLUSTER", "FAILOVER")  # again if the last one timed out (5 s)
                for _ in range(120):
                    if client.info("replication").get("role") == "master":
                        break
                    time.sleep(0.05)
        # Every node must see the promotion before anyone asks it who owns the slots.
        deadline = time.monotonic() + START_TIMEOUT
        while not all(replica in self._masters_now(node) for node in self.ports + self.replicas):
            if time.monotonic() > deadline:
                raise AssertionError("the nodes never learnt of the promotion")
            time.sleep(0.05)
        old = next(p for p in self.ports if p not in self._masters_now())
        self.ports[self.ports.index(old)] = replica
        self.replicas[self.replicas.index(replica)] = old
        for port in self.ports:
            self._wait(port, lambda info: "cluster_state:ok" in info)

    def kill_master(self, master: int) -> int:
        """SIGKILL the master on port ``master`` and wait until its replica took its slots; the replica's port.

        No ``CLUSTER FAILOVER``: the replica and the other masters must notice
        the death themselves (``cluster-node-timeout``) and hold an election,
        as after a crash. The dead node stays down.
        """
        master_id = self._node_id(master)
        replica = next(port for port in self.replicas if master_id in self._replica_of(port))
        proc = self._proc_of.pop(master)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + START_TIMEOUT
        alive = [port for port in self.ports + self.replicas if port != master]
        while not all(replica in self._masters_now(node) for node in alive):
            if time.monotonic() > deadline:
                raise AssertionError("the replica was never promoted")
            time.sleep(0.05)
        self.ports[self.ports.index(master)] = replica
        self.replicas.remove(replica)
        for port in self.ports:
            self._wait(port, lambda info: "cluster_state:ok" in info)
        return replica

    def _node_id(self, port: int) -> str:
        with SyncRedis(host="127.0.0.1", port=port, socket_timeout=5) as client:
            return _text(client.execute_command("CLUSTER", "MYID"))

    def _replica_of(self, port: int) -> str:
        """The ``CLUSTER NODES`` line of the node on ``port`` itself (names its master)."""
        with SyncRedis(host="127.0.0.1", port=port, socket_timeout=5) as client:
            nodes = _text(client.execute_command("CLUSTER", "NODES"))
        return next(line for line in nodes.splitlines() if "myself" in line)

    def restart_empty(self) -> None:
        """SIGKILL every node and start it again on its ports, with its cluster config and no data.

        As a cluster that keeps nothing on disk comes back from a crash: the
        same masters with the same slots, and every key gone.
        """
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs = []
        self._proc_of = {}
        for port, bus_port in zip(self.ports, self.bus_ports):
            self._spawn(port, bus_port)
        for port in self.ports:
            self._wait(port, lambda info: "cluster_state:ok" in info)

    def _masters_now(self, node: int | None = None) -> set[int]:
        """The masters serving slots, as ``node`` (by default the newest replica) sees them."""
        with SyncRedis(host="127.0.0.1", port=self.replicas[-1] if node is None else node, socket_timeout=5) as client:
            slots = client.execute_command("CLUSTER", "SLOTS")
        return {int(entry[2][1]) for entry in slots}

    def _spawn(self, port: int, bus_port: int) -> None:
        self._proc_of[port] = proc = subprocess.Popen(
            [self.server, "--port", str(port), "--cluster-port", str(bus_port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
             "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
             "--dir", str(self.directory), "--logfile", str(self.directory / f"redis-{port}.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)

    def client(self, port: int) -> Redis:
        """A plain client of one node (not cluster-aware), for the test to look or act."""
        return Redis(host="127.0.0.1", port=port, socket_timeout=5)

    async def owner(self, slot: int) -> int:
        """The port of the master serving ``slot`` now."""
        async with self.client(self.ports[0]) as client:
            for start, end, master, *_ in await client.execute_command("CLUSTER", "SLOTS", NEVER_DECODE=True):
                if start <= slot <= end:
                    return int(master[1])
        raise AssertionError(f"slot {slot} is not served")

    async def move_slot(self, slot: int, target: int) -> None:
        """Move ``slot`` and its keys to the master on port ``target``, as a reshard does.

        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys,
        then SETSLOT NODE everywhere: the source drops the slot's shard
        channels (its subscribers get ``sunsubscribe``).
        """
        source = await self.owner(slot)
        src, dst = self.client(source), self.client(target)
        try:
            src_id, dst_id = (await src.execute_command("CLUSTER", "MYID")), (await dst.execute_command("CLUSTER", "MYID"))
            src_id, dst_id = _text(src_id), _text(dst_id)
            await dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            await src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := await src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                await src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            for client in (dst, src):
                await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            for port in self.ports:
                if port not in (source, target):
                    async with self.client(port) as other:
                        await other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        finally:
            await src.aclose()
            await dst.aclose()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _wait(self, port: int, ready: Callable[[str], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with SyncRedis(host="127.0.0.1", port=port, socket_timeout=5) as client:
                    if ready(_text(client.execute_command("CLUSTER", "INFO"))):
                        return
            except (OSError, RedisConnectionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Redis Cluster node {port} not ready in {START_TIMEOUT}s")
            time.sleep(0.05)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="session")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """One three-master cluster for the whole session (it takes seconds to form).

    Tests share it the way they share the Redis on 6379: each uses a key
    prefix of its own. A test that moves slots leaves every slot served.
    """
    server, cli = require_cluster_binaries()
    cluster = PrivateCluster(tmp_path_factory.mktemp("redis-cluster"), server, cli)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


async def delete_prefix(cluster: PrivateCluster, prefix: str) -> None:
    """Delete every key of ``prefix`` on every master (a test's own keys)."""
    for port in cluster.ports:
        async with cluster.client(port) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}.*", count=1000)]
            for key in keys:  # one by one: the keys of one master may span its slots
                await client.delete(key)


@pytest.fixture
async def prefix(private_cluster: PrivateCluster) -> AsyncIterator[str]:
    """A key prefix of the test's own, its keys deleted from every master afterwards."""
    prefix = f"swtest-{secrets.token_hex(4)}"
    yield prefix
    await delete_prefix(private_cluster, prefix)
