"""The memory presence store against the shared contract."""

from __future__ import annotations

import pytest

from server.presence.memory import MemoryPresence
from tests.presence.conformance import PresenceConformance, channel  # noqa: F401


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class TestMemoryPresence(PresenceConformance):
    @pytest.fixture
    def clock(self):
        return Clock()

    @pytest.fixture
    def make_store(self, clock):
        shared: list[MemoryPresence] = []

        async def make(ttl: float) -> MemoryPresence:
            # One process: every "node" is the same store.
            if not shared:
                shared.append(MemoryPresence(ttl, clock))
            return shared[0]

        return make

    @pytest.fixture
    def advance(self, clock):
        async def advance(seconds: float) -> None:
            clock.now += seconds

        return advance
