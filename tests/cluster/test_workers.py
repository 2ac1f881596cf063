"""``stagewire serve --workers 2``: two processes on one port (SO_REUSEPORT) joined by Redis."""

from __future__ import annotations

import signal

import pytest

from tests.cluster.conftest import channel_name
from tests.serverproc import free_port, run_command

pytestmark = pytest.mark.redis


async def test_two_workers_share_the_port_and_the_channels(cluster):
    server = await cluster.start(["serve", "--workers", "2"], nodes=2)
    workers = server.descendants()
    assert len(workers) == 2, workers
    channel = channel_name("workers")

    clients = [await server.client(f"user{i}") for i in range(20)]
    nodes = {client.connect_result["node"] for client in clients}
    assert len(nodes) == 2  # the kernel spread the connections over both workers
    for client in clients:
        await client.result("subscribe", channel=channel)

    sent = await clients[0].result("publish", channel=channel, data="to everyone")
    for client in clients:  # subscribers of both workers
        push = await client.recv_push("pub", channel=channel, data="to everyone")
        assert push["offset"] == sent["offset"]

    server.send_signal(signal.SIGTERM)
    for client in clients:
        push, code = await client.recv_disconnect(timeout=10)
        assert code == push["code"] == 4000 and push["reconnect"] is True
    assert await server.wait() == 0
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_workers_with_the_memory_broker_are_refused(cluster, tmp_path):
    env = cluster.settings({"STAGEWIRE_BROKER__BACKEND": "memory"})
    result = await run_command(["serve", "--workers", "2"], tmp_path, env, port=free_port(), timeout=30)
    assert result.code == 2
    assert "--workers > 1 needs the redis broker" in result.err
