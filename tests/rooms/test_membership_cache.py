"""The members-only authorizer: cached per node, invalidated on every node."""

from __future__ import annotations

import secrets

import pytest

from handlers.rooms import membership
from handlers.rooms.membership import CONTROL_OP
from models.rooms import Membership
from server.appkeys import NODE
from tests.rooms.conftest import create_room, rooms_settings
from tests.services import require_redis

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _cache(sw):
    return sw.app[NODE].authorizers["room"].__self__


async def test_answers_are_cached_and_a_change_from_any_node_drops_them(sw):
    alice = await sw.client("alice")
    bob = await sw.client("bob")
    room = await create_room(alice, public=True)
    await bob.result("rooms.join", room=room["id"])
    cache = _cache(sw)
    await bob.result("subscribe", channel=room["channel"])
    await bob.result("unsubscribe", channel=room["channel"])
    await bob.result("subscribe", channel=room["channel"])
    for _ in range(2):
        await bob.recv_push("join", channel=room["channel"])
    assert (cache.misses, cache.hits) == (1, 1)

    # Removed behind the server's back: the cached answer still says yes...
    await Membership.filter(room_id=room["id"], user__username="bob").delete()
    await bob.result("history", channel=room["channel"])
    # ...until a node announces the change, as the service does after every one.
    sw.app[NODE].on_control({"op": CONTROL_OP, "room": room["id"], "user": "bob", "member": False})
    await bob.assert_error(103, "history", channel=room["channel"])
    await bob.recv_push("unsubscribe", channel=room["channel"])  # its subscription was dropped
    await alice.result("messages.send", room=room["id"], body="bob is gone")
    await bob.assert_quiet()


async def test_a_stale_answer_read_during_a_change_is_not_kept(sw, monkeypatch):
    alice = await sw.client("alice")
    room = await create_room(alice)
    cache = _cache(sw)

    async def racing_lookup(room_id, username):
        # A change is announced while the database is being asked.
        cache.on_change({"op": CONTROL_OP, "room": room_id, "user": username, "member": False})
        return True

    monkeypatch.setattr(membership, "is_member", racing_lookup)
    identity = next(iter(sw.app[NODE].connections.values())).identity
    assert await cache.authorize(identity, room["channel"]) is True
    assert (cache.misses, cache.hits) == (1, 0)

    asked: list[tuple[int, str]] = []

    async def lookup(room_id, username):
        asked.append((room_id, username))
        return False  # what the change said

    monkeypatch.setattr(membership, "is_member", lookup)
    # Had the racing answer been kept, this would be a hit saying yes.
    assert await cache.authorize(identity, room["channel"]) is False, "an answer read across a change must not be cached"
    assert asked == [(room["id"], "alice")] and (cache.misses, cache.hits) == (2, 0)
    assert await cache.authorize(identity, room["channel"]) is False  # an answer read in peace is kept
    assert asked == [(room["id"], "alice")] and (cache.misses, cache.hits) == (2, 1)


@pytest.mark.redis
async def test_a_change_on_one_node_reaches_the_cache_of_another(make_stagewire, tmp_path, database_url):
    settings = rooms_settings(tmp_path, database_url).replace(
        broker={"backend": "redis", "redis_url": require_redis(), "prefix": f"swtest-{secrets.token_hex(4)}"}
    )
    one = await make_stagewire(settings)
    two = await make_stagewire(settings)
    alice = await one.client("alice")
    bob_on_two = await two.client("bob")
    room = await create_room(alice)
    await bob_on_two.assert_error(103, "subscribe", channel=room["channel"])  # "no", cached on two

    await alice.result("rooms.invite", room=room["id"], user="bob")  # on one
    await bob_on_two.result("subscribe", channel=room["channel"])
    await bob_on_two.recv_push("join", channel=room["channel"])

    bob_on_one = await one.client("bob")
    await bob_on_one.result("rooms.leave", room=room["id"])  # on one, again
    left = await bob_on_two.recv_push("pub", channel=room["channel"])
    assert left["data"]["event"] == "member.left"
    # The change reaches two on the broker's control channel, which is not ordered
    # with the room's own channel: the unsubscribe push says it has arrived.
    await bob_on_two.recv_push("unsubscribe", channel=room["channel"])
    await bob_on_two.assert_error(103, "history", channel=room["channel"])
    await alice.result("messages.send", room=room["id"], body="after bob left")
    await bob_on_two.assert_quiet()
