"""The Pusher message handler under Hypothesis: any message, or any event built from known parts, gets coded replies.

The same harness as ``bench/fuzz_pusher.py`` (atheris, 10⁶ inputs with
``make fuzz-pusher``), here at the volume ``make test`` can afford.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, AsyncIterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_pusher import CHANNELS, EVENTS, KEYS, USERS, PusherHarness, pusher_fuzz_settings, signin_data, subscribe_data
from server.pusher import protocol as pp

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(CHANNELS),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
    max_leaves=8,
)
channels = st.sampled_from(CHANNELS) | st.text(max_size=12)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
async def harness(tmp_path) -> AsyncIterator[tuple[PusherHarness, Any]]:
    h = PusherHarness(pusher_fuzz_settings(str(tmp_path)))
    await h.start()
    loop = asyncio.get_running_loop()
    context = h.context
    assert isinstance(context, contextvars.Context)

    def run(message: str | bytes) -> Any:
        # Hypothesis calls the test synchronously: each input runs to completion on the test's loop.
        return loop.create_task(h.run(message), context=context)

    yield h, run
    await h.close()


@FUZZ
@given(message=st.text(max_size=300) | st.binary(max_size=300))
async def test_any_message(harness, message):
    h, run = harness
    PusherHarness.check(*await run(message))


@FUZZ
@given(message=st.builds(lambda e, c, d: orjson.dumps({"event": e, "channel": c, "data": d}).decode(),
                         st.sampled_from(EVENTS), channels, json_values))
async def test_any_data_for_every_event(harness, message):
    h, run = harness
    PusherHarness.check(*await run(message))


@FUZZ
@given(steps=st.lists(st.tuples(st.sampled_from(["subscribe", "signin", "unsubscribe", "client"]), channels,
                                st.sampled_from(USERS), json_values, st.booleans()), min_size=1, max_size=6))
async def test_sequences_with_valid_signatures_reach_every_handler(harness, steps):
    h, run = harness
    for op, channel, user, value, signed in steps:
        if op == "subscribe":
            event = {"event": "pusher:subscribe",
                     "data": subscribe_data(h, channel, user, value, signed, None, "forged:sig")}
        elif op == "signin":
            event = {"event": "pusher:signin", "data": signin_data(h, user, value, signed, "forged:sig")}
        elif op == "unsubscribe":
            event = {"event": "pusher:unsubscribe", "data": {"channel": channel}}
        else:
            event = {"event": "client-fuzz", "channel": channel, "data": value}
        messages, closed = await run(orjson.dumps(event).decode())
        PusherHarness.check(messages, closed)


async def test_the_checks_catch_an_uncoded_error_and_a_silent_close():
    with pytest.raises(AssertionError, match="uncoded"):
        PusherHarness.check([pp.error(None, "internal error")], None)
    with pytest.raises(AssertionError, match="nothing said"):
        PusherHarness.check([], (4501, "invalid sign-in"))
    PusherHarness.check([pp.error(pp.UNAUTHORIZED, "invalid sign-in")], (4501, "invalid sign-in"))


async def test_a_signed_subscription_and_a_refused_sign_in_go_through_the_harness(harness):
    h, run = harness
    subscribe = {"event": "pusher:subscribe", "data": subscribe_data(h, "presence-a", "u1", {"n": 1}, True, None, "")}
    messages, closed = await run(orjson.dumps(subscribe).decode())
    assert [m["event"] for m in messages] == ["pusher_internal:subscription_succeeded"] and closed is None
    before = h.socket_id
    messages, closed = await run(orjson.dumps({"event": "pusher:signin",
                                               "data": signin_data(h, "u1", None, False, "k:bad")}).decode())
    PusherHarness.check(messages, closed)
    assert closed is not None and messages[-1]["data"]["code"] == pp.UNAUTHORIZED
    assert h.socket_id != before  # a new connection for the next input
