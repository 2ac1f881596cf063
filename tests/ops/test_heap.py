"""The heap trimmer: free pages go back to the system once connections came and went and the node is quiet."""

from __future__ import annotations

import asyncio
import os

import pytest

from server.appkeys import NODE
from server.ops.heap import TRIM_CHURN, HeapTrimmer, malloc_trim
from tests.client.helpers import eventually
from tests.conftest import make_settings
from tests.ops.test_metrics import scrape

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def test_malloc_trim_hands_freed_pages_between_live_blocks_back():
    trim = malloc_trim()
    if trim is None:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    # 4,000-byte buffers come from malloc (over pymalloc's 512 bytes); keeping one in
    # ten leaves the freed ones between live blocks, where free() keeps them resident.
    blocks = [bytearray(4000) for _ in range(20_000)]
    kept = blocks[::10]
    del blocks
    before = rss()
    trim(0)
    after = rss()
    assert before - after > 16 * 2**20, (before, after)
    assert len(kept) == 2000


async def test_trims_once_connections_came_and_went_and_the_node_is_quiet(stagewire):
    node = stagewire.app[NODE]
    trims: list[int] = []
    trimmer = HeapTrimmer(node, lambda pad: trims.append(pad) or 1, churn=4, quiet=3)
    alice = [await stagewire.client("alice") for _ in range(3)]
    assert not trimmer.check()  # 3 opened: not enough yet
    bob = await stagewire.client("bob")
    for channel in ("chat:a", "chat:b", "chat:c"):
        await bob.result("subscribe", channel=channel)
    assert not trimmer.check() and trims == []  # 4 opened, but 5 events since the last look: busy
    assert trimmer.check() and trims == [0]  # a quiet interval: now
    assert node.counters.heap_trims == 1
    assert not trimmer.check()  # nothing came or went since
    for client in alice:
        await client.close()
    await eventually(lambda: len(node.connections) == 1, "down to bob")
    assert not trimmer.check()  # 3 closed
    await stagewire.client("carol")
    assert trimmer.check() and node.counters.heap_trims == 2  # the closes counted


async def test_never_while_traffic_flows(stagewire):
    node = stagewire.app[NODE]
    trimmer = HeapTrimmer(node, lambda pad: 1, churn=1, quiet=2)
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="chat:a")
    for interval in range(50):
        await alice.result("publish", channel="chat:a", data=interval)  # a command and a publication
        await alice.recv_push("pub", channel="chat:a")
        assert not trimmer.check()
    assert trimmer.check() and node.counters.heap_trims == 1  # the traffic stopped


async def test_the_server_runs_the_trimmer_and_counts_its_trims(make_stagewire, tmp_path):
    if malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    sw = await make_stagewire(make_settings(tmp_path, server={"heap_trim_interval": 0.05}))
    token = await sw.token("alice")
    clients = [await sw.client(token=token) for _ in range(TRIM_CHURN // 2)]
    for client in clients:
        await client.close()  # as many opened as closed: TRIM_CHURN in all
    node = sw.app[NODE]
    await eventually(lambda: node.counters.heap_trims == 1, "a trim")
    assert (await scrape(sw))["stagewire_heap_trims_total"] == 1


async def test_off_when_the_interval_is_zero(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, server={"heap_trim_interval": 0}))
    await sw.client("alice")
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "heap-trimmer"]
    assert sw.app[NODE].counters.heap_trims == 0
