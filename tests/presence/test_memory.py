"""The memory presence store against the shared contract (one node: it lives in one process)."""

from __future__ import annotations

import pytest

from server.presence.memory import MemoryPresence
from tests.presence.conformance import PresenceConformance, channel  # noqa: F401


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class TestMemoryPresence(PresenceConformance):
    multi_node = False

    @pytest.fixture
    def clock(self):
        return Clock()

    @pytest.fixture
    def make_store(self, clock):
        async def make(ttl: float) -> MemoryPresence:
            # A store of its own every time: one process cannot hold another node's presence.
            return MemoryPresence(ttl, clock)

        return make

    @pytest.fixture
    def advance(self, clock):
        async def advance(seconds: float) -> None:
            clock.now += seconds

        return advance
