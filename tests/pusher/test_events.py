"""The webhook seam (``PusherService.events``): each event once, with Pusher's fields."""

from __future__ import annotations

import asyncio

from server.appkeys import PUSHER
from server.pusher.events import PusherEvent


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def emit(self, app, event: PusherEvent) -> None:
        self.events.append((app.id, event.to_dict()))

    def names(self) -> list[str]:
        return [e["name"] for _, e in self.events]


async def settle(recorder: Recorder, count: int) -> None:
    for _ in range(100):  # cleanup after a close runs in the background
        if len(recorder.events) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(recorder.events)


async def test_every_event_a_webhook_carries_is_emitted_once(pusher_app, pusher_client):
    recorder = Recorder()
    pusher_app.app[PUSHER].events = recorder
    a, b = await pusher_client(), await pusher_client()
    await a.subscribe("presence-w", "ua")
    await b.subscribe("presence-w", "ub")
    assert recorder.events == [
        ("1001", {"name": "channel_occupied", "channel": "presence-w"}),
        ("1001", {"name": "member_added", "channel": "presence-w", "user_id": "ua"}),
        ("1001", {"name": "member_added", "channel": "presence-w", "user_id": "ub"}),
    ]
    await a.send("client-hi", {"x": 1}, "presence-w")
    await b.expect("client-hi", "presence-w")
    assert recorder.events[-1] == ("1001", {"name": "client_event", "channel": "presence-w", "user_id": "ua",
                                            "event": "client-hi", "data": '{"x":1}', "socket_id": a.socket_id})
    await a.subscribe("cache-w")
    await a.expect("pusher:cache_miss", "cache-w")
    assert recorder.names()[-2:] == ["channel_occupied", "cache_miss"]
    del recorder.events[:]
    native = await pusher_app.client("nat")
    await native.result("subscribe", channel="pusher:presence-w")
    await settle(recorder, 1)
    assert recorder.events == [("1001", {"name": "member_added", "channel": "presence-w", "user_id": "nat"})]
    await native.close()
    await a.close()
    await b.close()
    await settle(recorder, 6)
    assert sorted(recorder.names()) == sorted(["member_added", "member_removed", "member_removed",
                                               "member_removed", "channel_vacated", "channel_vacated"])
