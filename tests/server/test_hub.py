"""The hub alone: plain subscriber objects, bytes in, bytes out; no sockets, no broker, no loop."""

from __future__ import annotations

from typing import Any, Collection, Mapping

import msgpack
import orjson

from server import protocol
from server.hub import SMALL, Hub
from server.protocol import Encoding


class RecordingWriter:
    """Keeps every payload queued for one subscriber."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.append = self.payloads.append
        self.scheduled = 0

    def enqueue(self, payload: bytes) -> None:
        self.payloads.append(payload)

    def schedule(self) -> None:
        self.scheduled += 1

    @property
    def queued_bytes(self) -> int:
        return sum(len(p) for p in self.payloads)


class Sub:
    def __init__(self, encoding: Encoding = Encoding.JSON) -> None:
        self.encoding = encoding
        self.writer = RecordingWriter()
        self.subscriptions: Collection[str] = ()  # as a Connection starts

    def send(self, message: Mapping[str, Any]) -> None:
        self.writer.enqueue(protocol.encode(message, self.encoding))

    def received(self) -> list[Any]:
        if self.encoding is Encoding.JSON:
            return [orjson.loads(p) for p in self.writer.payloads]
        return [msgpack.unpackb(p, raw=False) for p in self.writer.payloads]


def pub(offset: int, channel: str = "chat:a") -> dict[str, Any]:
    return protocol.pub_push(channel, offset, {"n": offset}, None)


def live(hub: Hub, sub: Sub, channel: str = "chat:a", covered: int = 0) -> bool:
    first = hub.add(sub, channel)
    hub.activate(sub, channel, covered)
    return first


def test_first_and_last_subscriber_transitions():
    hub: Hub[Sub] = Hub()
    a, b = Sub(), Sub()
    assert hub.add(a, "chat:a") is True, "the first local subscriber"
    assert hub.add(b, "chat:a") is False, "a second one, even while the first is pending"
    hub.activate(a, "chat:a", 0)
    assert hub.remove(a, "chat:a") is False, "b is still there"
    assert hub.wanted("chat:a")
    assert hub.remove(b, "chat:a") is True, "the last one left"
    assert not hub.wanted("chat:a") and hub.wanted_channels() == set()
    assert a.subscriptions == () and b.subscriptions == ()


def test_a_pending_subscriber_counts_for_the_transitions():
    hub: Hub[Sub] = Hub()
    a = Sub()
    assert hub.add(a, "chat:a")
    assert hub.wanted("chat:a") and dict(hub.channels()) == {}, "pending: wanted, not yet live"
    assert hub.remove(a, "chat:a") is True


def test_broadcast_encodes_once_per_encoding_and_queues_the_same_bytes():
    hub: Hub[Sub] = Hub()
    jsons = [Sub(Encoding.JSON) for _ in range(3)]
    packs = [Sub(Encoding.MSGPACK) for _ in range(2)]
    for sub in jsons + packs:
        live(hub, sub)
    assert hub.broadcast("chat:a", pub(1)) == 5
    json_bytes = {id(s.writer.payloads[0]) for s in jsons}
    pack_bytes = {id(s.writer.payloads[0]) for s in packs}
    assert len(json_bytes) == 1 and len(pack_bytes) == 1, "one encoded object per encoding, shared"
    assert all(s.received() == [pub(1)] for s in jsons + packs)
    expected = len(protocol.encode(pub(1), Encoding.JSON))
    assert [s.writer.queued_bytes for s in jsons] == [expected] * 3


def test_broadcast_reaches_only_the_channels_subscribers():
    hub: Hub[Sub] = Hub()
    a, b = Sub(), Sub()
    live(hub, a, "chat:a")
    live(hub, b, "chat:b")
    assert hub.broadcast("chat:a", pub(1)) == 1
    assert hub.broadcast("chat:none", pub(1)) == 0
    assert a.received() == [pub(1)] and b.received() == []


def test_a_pending_subscription_buffers_and_activate_skips_what_the_reply_covered():
    hub: Hub[Sub] = Hub()
    sub = Sub()
    hub.add(sub, "chat:a")
    for offset in (1, 2, 3):
        assert hub.broadcast("chat:a", pub(offset)) == 0, "nothing is written while pending"
    assert sub.writer.payloads == []
    hub.activate(sub, "chat:a", covered_offset=2)
    assert sub.received() == [pub(3)], "offsets 1-2 were in the subscribe reply"
    hub.broadcast("chat:a", pub(4))
    assert sub.received() == [pub(3), pub(4)]


def test_pushes_other_than_publications_are_never_skipped():
    hub: Hub[Sub] = Hub()
    sub = Sub()
    hub.add(sub, "chat:a")
    join = protocol.presence_push("join", "chat:a", {"user": "bob"})
    hub.broadcast("chat:a", join)
    hub.activate(sub, "chat:a", covered_offset=10)
    assert sub.received() == [join]


def test_a_subscription_removed_while_pending_is_not_activated():
    hub: Hub[Sub] = Hub()
    sub = Sub()
    hub.add(sub, "chat:a")
    hub.broadcast("chat:a", pub(1))
    assert hub.remove(sub, "chat:a")
    hub.activate(sub, "chat:a", 0)
    assert sub.writer.payloads == [] and dict(hub.channels()) == {}


def test_remove_all_returns_the_channels_left_empty():
    hub: Hub[Sub] = Hub()
    a, b = Sub(), Sub()
    for channel in ("chat:a", "chat:b", "chat:c"):
        live(hub, a, channel)
    live(hub, b, "chat:b")
    assert sorted(hub.remove_all(a)) == ["chat:a", "chat:c"]
    assert a.subscriptions == ()
    assert dict(hub.channels()) == {"chat:b": 1}
    assert hub.subscribers("chat:b") == [b]


def test_counts_per_channel_cover_both_encodings():
    hub: Hub[Sub] = Hub()
    for encoding in (Encoding.JSON, Encoding.MSGPACK, Encoding.MSGPACK):
        live(hub, Sub(encoding))
    assert dict(hub.channels()) == {"chat:a": 3}
    assert len(hub.subscribers("chat:a")) == 3


def test_each_group_a_broadcast_reached_is_handed_over_for_flushing_and_a_leaver_flushes_alone():
    touched: list[list[Sub]] = []
    hub: Hub[Sub] = Hub(lambda group: touched.append(list(group)))
    a, b, c = Sub(), Sub(), Sub(Encoding.MSGPACK)
    for sub in (a, b, c):
        live(hub, sub)
    hub.broadcast("chat:a", pub(1))
    assert touched == [[a, b], [c]], "one hand-over per encoding group, not per subscriber"
    hub.remove(a, "chat:a")
    assert a.writer.scheduled == 1 and b.writer.scheduled == 0


def test_subscribers_share_one_string_per_channel_name():
    hub: Hub[Sub] = Hub()
    subs = [Sub() for _ in range(3)]
    for sub in subs:
        live(hub, sub, "".join(["chat:", "shared"]))  # a string of its own each time, as parsed from a command
    names = [next(iter(sub.subscriptions)) for sub in subs]
    assert names[0] == "chat:shared" and all(name is names[0] for name in names)


def test_a_subscribers_channels_are_a_tuple_while_few_then_a_set():
    hub: Hub[Sub] = Hub()
    sub = Sub()
    names = [f"chat:{i}" for i in range(SMALL + 2)]
    for name in names[:SMALL]:
        live(hub, sub, name)
    assert sub.subscriptions == tuple(names[:SMALL])  # 48 bytes for one channel, where a set takes 216
    hub.remove(sub, names[1])
    assert sub.subscriptions == tuple(n for n in names[:SMALL] if n != names[1])
    for name in names[SMALL:]:
        live(hub, sub, name)
    assert isinstance(sub.subscriptions, set) and sub.subscriptions == set(names) - {names[1]}
    assert sorted(hub.remove_all(sub)) == sorted(set(names) - {names[1]}) and not sub.subscriptions
