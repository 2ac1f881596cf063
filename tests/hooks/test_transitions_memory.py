"""The memory transitions store against the shared contract, and the node's side (local counts, order)."""

from __future__ import annotations

import asyncio

import pytest

from server.hooks.transitions import Transitions
from server.hooks.transitions_memory import MemoryTransitions
from tests.hooks.transitions_conformance import TransitionsConformance, channel  # noqa: F401


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class TestMemoryTransitions(TransitionsConformance):
    @pytest.fixture
    def clock(self):
        return Clock()

    @pytest.fixture
    def make_store(self, clock):
        async def make(grace: float) -> MemoryTransitions:
            store = MemoryTransitions(grace, clock)
            await store.start()
            return store

        return make

    @pytest.fixture
    def advance(self, clock):
        async def advance(seconds: float) -> None:
            clock.now += seconds

        return advance


async def test_leaving_reports_everything_still_present_as_gone():
    store = MemoryTransitions(1.0)
    await store.apply([(True, ("chat:a", None)), (True, ("chat:a", "alice")), (True, ("chat:b", None))])
    await store.apply([(False, ("chat:b", None))])
    assert sorted(await store.close(), key=str) == sorted(
        [("chat:a", None), ("chat:a", "alice"), ("chat:b", None)], key=str)


class FlakyStore(MemoryTransitions):
    """Fails its first ``failures`` applies, as a Redis that is briefly away."""

    def __init__(self, failures: int) -> None:
        super().__init__(0.0)
        self.failures = failures
        self.applied: list[list] = []

    async def apply(self, ops):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store away")
        self.applied.append(list(ops))
        return await super().apply(ops)


async def test_only_the_nodes_first_hold_and_last_release_reach_the_store_in_order():
    store = FlakyStore(failures=2)
    reports: list[tuple] = []
    transitions = Transitions(store, lambda *r: reports.append(r), settle_interval=0.02, heartbeat_interval=60)
    await transitions.start()
    try:
        for _ in range(3):  # three tabs of alice
            transitions.hold("chat:x", None)
            transitions.hold("chat:x", "alice")
        transitions.release("chat:x", "alice")
        transitions.release("chat:x", None)
        assert await transitions.flush(5)
        assert reports == [("channel_occupied", "chat:x", None), ("member_added", "chat:x", "alice")]
        for _ in range(2):
            transitions.release("chat:x", "alice")
            transitions.release("chat:x", None)
        transitions.release("chat:x", None)  # one release too many is ignored
        assert await transitions.flush(5)
        for _ in range(100):
            if len(reports) == 4:
                break
            await asyncio.sleep(0.02)
        assert reports[2:] == [("member_removed", "chat:x", "alice"), ("channel_vacated", "chat:x", None)]
        # Two failed applies were retried with the same ops, in order; only transitions reached the store.
        ops = [op for batch in store.applied for op in batch]
        assert ops == [(True, ("chat:x", None)), (True, ("chat:x", "alice")),
                       (False, ("chat:x", "alice")), (False, ("chat:x", None))]
        assert transitions.failures == 2
    finally:
        await transitions.close(1)
