"""The ``PresenceStore`` contract as one suite every backend runs.

A backend's module subclasses :class:`PresenceConformance` and provides
``make_store(ttl)``, an async factory returning a new store on every call (one
per node), and ``advance(seconds)``, which moves the stores' clock (a fake
clock, or a real wait for a backend that cannot fake time). For a distributed
backend the stores of one factory share their backend, like the nodes of one
cluster; a backend that lives in one process sets ``multi_node = False``, and
the tests that need several nodes are skipped for it.
"""

from __future__ import annotations

import itertools

import pytest

from server.presence.base import PresenceEntry

_ids = itertools.count()


@pytest.fixture
def channel() -> str:
    return f"presence:ch{next(_ids)}"


def require_nodes(suite: PresenceConformance) -> None:
    if not suite.multi_node:
        pytest.skip("this backend lives in one process: nodes cannot share its stores")


class PresenceConformance:
    multi_node = True

    async def test_users_join_once_and_leave_with_their_last_client(self, make_store, channel):
        store = await make_store(30)
        tab1, tab2 = PresenceEntry(channel, "c1", "alice"), PresenceEntry(channel, "c2", "alice")
        assert await store.add(tab1) is True
        assert await store.add(tab2) is False
        assert await store.add(PresenceEntry(channel, "c3", "bob")) is True
        assert await store.users(channel) == {"alice": 2, "bob": 1}
        assert await store.stats(channel) == (3, 2)
        assert await store.remove(tab1) is False
        assert await store.remove(tab2) is True
        assert await store.remove(tab2) is False  # already gone
        assert await store.users(channel) == {"bob": 1}

    async def test_remove_many_reports_each_transition_as_removes_one_by_one(self, make_store, channel):
        store = await make_store(30)
        other = channel + "-other"
        tabs = [PresenceEntry(channel, "c1", "alice"), PresenceEntry(channel, "c2", "alice"),
                PresenceEntry(channel, "c3", "bob"), PresenceEntry(other, "c4", "alice")]
        for entry in tabs:
            await store.add(entry)
        await store.add(PresenceEntry(channel, "c5", "carol", info='{"n": 1}'))
        assert await store.remove_many([]) == []
        # alice's first tab, her last one, bob's only one, one never added, one of another channel.
        assert await store.remove_many([*tabs[:3], PresenceEntry(channel, "c9", "dave"), tabs[3]]) == [
            False, True, True, False, True
        ]
        assert await store.users(channel) == {"carol": 1} and await store.users(other) == {}
        assert await store.remove_many([PresenceEntry(channel, "c5", "carol")]) == [True]
        assert await store.members(channel) == {}

    async def test_adding_the_same_client_twice_counts_it_once(self, make_store, channel):
        store = await make_store(30)
        entry = PresenceEntry(channel, "c1", "alice")
        assert await store.add(entry) is True
        assert await store.add(entry) is False
        assert await store.stats(channel) == (1, 1)
        assert await store.remove(entry) is True

    async def test_unrefreshed_clients_expire_and_report_who_left(self, make_store, advance, channel):
        store = await make_store(1)
        await store.add(PresenceEntry(channel, "a1", "alice"))
        await store.add(PresenceEntry(channel, "a2", "alice"))
        await store.add(PresenceEntry(channel, "b1", "bob"))
        await advance(0.6)
        await store.refresh([PresenceEntry(channel, "a1", "alice")])
        await advance(0.6)
        assert await store.expire([channel]) == [(channel, "bob")]  # alice still has a1
        assert await store.expire([channel]) == []  # reported once
        assert await store.users(channel) == {"alice": 1}
        assert await store.stats(channel) == (1, 1)

    async def test_nodes_share_presence(self, make_store, channel):
        require_nodes(self)
        a, b = await make_store(30), await make_store(30)
        assert a is not b, "each node needs a store of its own"
        assert await a.add(PresenceEntry(channel, "a1", "alice")) is True
        assert await b.add(PresenceEntry(channel, "b1", "alice")) is False
        assert await b.users(channel) == {"alice": 2}
        assert await a.remove(PresenceEntry(channel, "a1", "alice")) is False
        assert await b.remove(PresenceEntry(channel, "b1", "alice")) is True

    async def test_a_dead_nodes_entries_expire_and_a_live_node_reports_who_left(self, make_store, advance, channel):
        require_nodes(self)
        live, dead = await make_store(2), await make_store(2)
        assert live is not dead, "each node needs a store of its own"
        await live.add(PresenceEntry(channel, "l1", "alice"))
        await dead.add(PresenceEntry(channel, "d1", "alice"))
        await dead.add(PresenceEntry(channel, "d2", "bob"))
        await advance(1.2)
        await live.refresh([PresenceEntry(channel, "l1", "alice")])
        await advance(1.2)
        gone = await live.expire([channel])
        assert gone == [(channel, "bob")]  # alice still has a live client
        assert await live.expire([channel]) == []  # reported once
        assert await live.users(channel) == {"alice": 1}
        assert await dead.stats(channel) == (1, 1)

    async def test_members_carry_the_info_of_their_user(self, make_store, channel):
        require_nodes(self)
        a, b = await make_store(30), await make_store(30)
        assert await a.add(PresenceEntry(channel, "a1", "alice", '{"name":"Alice"}')) is True
        assert await b.add(PresenceEntry(channel, "b1", "bob")) is True
        assert await b.members(channel) == {"alice": '{"name":"Alice"}', "bob": None}
        # A second client of the same user with new info: still one member, the latest info.
        assert await b.add(PresenceEntry(channel, "b2", "alice", '{"name":"Al"}')) is False
        assert await a.members(channel) == {"alice": '{"name":"Al"}', "bob": None}
        assert await a.stats(channel) == (3, 2)

    async def test_one_store_keeps_the_latest_info_of_each_member(self, make_store, channel):
        store = await make_store(30)
        assert await store.add(PresenceEntry(channel, "a1", "alice", '{"name":"Alice"}')) is True
        assert await store.add(PresenceEntry(channel, "b1", "bob")) is True
        assert await store.members(channel) == {"alice": '{"name":"Alice"}', "bob": None}
        assert await store.add(PresenceEntry(channel, "a2", "alice", '{"name":"Al"}')) is False
        assert await store.members(channel) == {"alice": '{"name":"Al"}', "bob": None}
        assert await store.stats(channel) == (3, 2)

    async def test_a_users_info_is_forgotten_when_the_user_leaves(self, make_store, channel):
        store = await make_store(30)
        await store.add(PresenceEntry(channel, "c1", "alice", '{"v":1}'))
        await store.add(PresenceEntry(channel, "c2", "alice", '{"v":1}'))
        assert await store.remove(PresenceEntry(channel, "c1", "alice")) is False
        assert await store.members(channel) == {"alice": '{"v":1}'}  # one client left
        assert await store.remove(PresenceEntry(channel, "c2", "alice")) is True
        assert await store.members(channel) == {}
        await store.add(PresenceEntry(channel, "c3", "alice"))  # back, without info
        assert await store.members(channel) == {"alice": None}

    async def test_expired_members_and_their_info_go(self, make_store, advance, channel):
        store = await make_store(1)
        await store.add(PresenceEntry(channel, "c1", "alice", '{"v":1}'))
        await advance(1.2)
        assert await store.members(channel) == {}  # reads skip expired entries
        await store.expire([channel])
        await store.add(PresenceEntry(channel, "c2", "alice"))
        assert await store.members(channel) == {"alice": None}
