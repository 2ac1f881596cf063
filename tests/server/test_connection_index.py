"""The node's index of connections by user and by session: one member kept bare, a dict's keys from two."""

from __future__ import annotations

from typing import Any

from server.node import ConnectionIndex


class Conn:
    """Hashable by identity, as a Connection is."""


def test_members_come_and_go_and_a_lone_one_is_kept_bare() -> None:
    index = ConnectionIndex()
    a, b, c = Conn(), Conn(), Conn()
    conns: Any = (a, b, c)
    index.add("alice", conns[0])
    index.add("alice", conns[0])  # twice: still one
    assert index.get("alice") == {a} and index._map["alice"] is a
    index.add("alice", conns[1])
    index.add("bob", conns[2])
    assert index.get("alice") == {a, b} and index.get("bob") == {c} and len(index) == 2
    assert type(index._map["alice"]) is dict
    index.discard("alice", conns[0])
    assert index.get("alice") == {b} and index._map["alice"] is b
    index.discard("alice", conns[2])  # not a member: nothing happens
    index.discard("alice", conns[1])
    index.discard("nobody", conns[1])
    assert index.get("alice") == set() and len(index) == 1


def test_get_is_a_copy_that_survives_closing_its_members() -> None:
    index = ConnectionIndex()
    a, b = Conn(), Conn()
    conns: Any = (a, b)
    for conn in conns:
        index.add("s", conn)
    for conn in index.get("s"):
        index.discard("s", conn)  # what a close does to the index
    assert index.get("s") == set() and len(index) == 0
