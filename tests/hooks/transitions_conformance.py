"""The ``TransitionStore`` contract as one suite every backend runs.

A backend's module subclasses :class:`TransitionsConformance` and provides
``make_store(grace)``, an async factory of one node's started store, and
``advance(seconds)``, which moves the store's clock (a fake clock, or a real
wait for Redis, whose clock the scripts read).
"""

from __future__ import annotations

import itertools

import pytest

_ids = itertools.count()
GRACE = 1.0


@pytest.fixture
def channel() -> str:
    return f"chat:transitions-{next(_ids)}"


class TransitionsConformance:
    async def test_the_first_hold_is_reported_once(self, make_store, channel):
        store = await make_store(GRACE)
        assert await store.apply([(True, (channel, None)), (True, (channel, "alice"))]) == [True, True]
        # Held again (a node holding it again after a resync): nothing new.
        assert await store.apply([(True, (channel, None))]) == [False]
        assert await store.apply([(True, (channel, "bob"))]) == [True]

    async def test_the_last_release_is_reported_after_the_grace_once(self, make_store, advance, channel):
        store = await make_store(GRACE)
        await store.apply([(True, (channel, None)), (True, (channel, "alice"))])
        assert await store.apply([(False, (channel, "alice")), (False, (channel, None))]) == [False, False]
        assert await store.settle() == []  # within the grace
        await advance(GRACE + 0.2)
        assert sorted(await store.settle(), key=str) == sorted([(channel, None), (channel, "alice")], key=str)
        assert await store.settle() == []
        # Gone: the next hold is a new arrival.
        assert await store.apply([(True, (channel, None))]) == [True]

    async def test_a_hold_within_the_grace_cancels_it(self, make_store, advance, channel):
        store = await make_store(GRACE)
        await store.apply([(True, (channel, "alice"))])
        await store.apply([(False, (channel, "alice"))])
        await advance(GRACE / 2)
        assert await store.apply([(True, (channel, "alice"))]) == [False]  # back: no second "added"
        await advance(GRACE)
        assert await store.settle() == []  # and no "removed"
        await store.apply([(False, (channel, "alice"))])
        await advance(GRACE + 0.2)
        assert await store.settle() == [(channel, "alice")]

    async def test_a_release_of_something_not_held_reports_nothing(self, make_store, advance, channel):
        store = await make_store(GRACE)
        assert await store.apply([(False, (channel, None))]) == [False]
        await advance(GRACE + 0.2)
        assert await store.settle() == []

    async def test_members_are_per_user_and_apart_from_the_channel(self, make_store, advance, channel):
        store = await make_store(GRACE)
        await store.apply([(True, (channel, None)), (True, (channel, "alice")), (True, (channel, "bob"))])
        await store.apply([(False, (channel, "bob"))])
        await advance(GRACE + 0.2)
        assert await store.settle() == [(channel, "bob")]
        assert await store.apply([(True, (channel, "alice"))]) == [False]
