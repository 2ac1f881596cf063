"""The heap trimmer: free pages go back to the system once connections came and went, between handshakes."""

from __future__ import annotations

import asyncio
import os

import pytest

from server.appkeys import NODE
from server.ops.heap import TRIM_CHURN, HeapTrimmer, malloc_trim
from tests.conftest import make_settings

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def until(condition, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"still not {what} after {timeout} s"
        await asyncio.sleep(0.01)


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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_trims_once_a_burst_of_connects_and_commands_is_over(stagewire):
    node = stagewire.app[NODE]
    trims: list[int] = []
    trimmer = HeapTrimmer(node, lambda pad: trims.append(pad) or 1, churn=8, quiet=3, clock=Clock())
    alice = [await stagewire.client("alice") for _ in range(3)]  # 3 opened, 3 connect commands
    assert not trimmer.check()  # 6 events: not enough yet
    for client in alice:
        await client.result("subscribe", channel="chat:a")  # 9 since the last trim, 3 since the last look
    assert not trimmer.check() and trims == []  # enough, but the burst is still on
    assert trimmer.check() and trims == [0]  # a quiet interval: now
    assert node.counters.heap_trims == 1
    assert not trimmer.check()  # nothing came or went since
    for client in alice:
        await client.close()
    await until(lambda: not node.connections, "all closed")
    bob = await stagewire.client("bob")  # 3 closed, 1 opened, 1 command: 5
    for channel in ("chat:a", "chat:b", "chat:c"):
        await bob.result("subscribe", channel=channel)  # 8: the closes count
    assert not trimmer.check()
    assert trimmer.check() and node.counters.heap_trims == 2


async def test_traffic_that_never_quiets_down_is_trimmed_every_so_often(stagewire):
    node = stagewire.app[NODE]
    clock = Clock()
    trimmer = HeapTrimmer(node, lambda pad: 1, churn=4, quiet=2, every=60.0, clock=clock)
    alice = await stagewire.client("alice")
    await alice.result("subscribe", channel="chat:a")
    for second in range(70):
        clock.now += 1
        for i in range(2):  # 2 commands a second: never quiet
            await alice.result("publish", channel="chat:a", data=i)
        if trimmer.check():
            break
    assert second == 59 and node.counters.heap_trims == 1


async def test_the_server_runs_the_trimmer_and_counts_its_trims(make_stagewire, tmp_path):
    if malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    sw = await make_stagewire(make_settings(
        tmp_path, server={"heap_trim_interval": 0.05}, client={"command_rate": 10_000, "command_burst": 10_000}))
    alice = await sw.client("alice")
    await alice.result("subscribe", channel="chat:a")
    for i in range(TRIM_CHURN):
        await alice.result("publish", channel="chat:a", data=i)
    node = sw.app[NODE]
    await until(lambda: node.counters.heap_trims == 1, "trimmed")
    async with sw.http.get(f"{sw.url}/metrics", headers={"Authorization": "Bearer test-api-key"}) as r:
        assert "stagewire_heap_trims_total 1.0" in await r.text()


async def test_off_when_the_interval_is_zero(make_stagewire, tmp_path):
    sw = await make_stagewire(make_settings(tmp_path, server={"heap_trim_interval": 0}))
    await sw.client("alice")
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "heap-trimmer"]
    assert sw.app[NODE].counters.heap_trims == 0
