"""``GET /sse`` and its event ids under Hypothesis: any query, any ``Last-Event-ID``, coded answers only.

Before the stream starts a refusal is the server's JSON error (a known
code, a message, never 500); once it starts, the stream opens with
``retry``, then ``subscribed`` (or a coded ``error`` event), and every event
carries JSON. :func:`server.sse.codec.decode_id` takes any text and returns
positions or None, never raises. ``bench/fuzz_sse.py`` (atheris, ``make
fuzz-sse``) runs the route's checks and the stream's start at volume.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.errors import ErrorCode
from server.sse import codec

CODES = {int(code) for code in ErrorCode}
NAMES = ["news:a", "chat:b", "user:sam", "user:other", "nope:x", "news:", ":", "news:a,chat:b", "ops:stats", ""]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
positions = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8),
                            st.tuples(st.integers(0, 2**63), st.text(max_size=8)), max_size=3)
event_ids = st.builds(codec.encode_id, positions) | printable
query = st.lists(st.tuples(st.sampled_from(["channel", "channels", "last_event_id", "ticket", "x"]),
                           st.sampled_from(NAMES) | event_ids | st.text(max_size=20)), max_size=5)


@settings(max_examples=2000, deadline=None)
@given(text=st.text(max_size=200) | event_ids)
def test_decode_id_takes_any_text(text):
    decoded = codec.decode_id(text)
    assert decoded is None or all(
        isinstance(c, str) and type(o) is int and o >= 0 and isinstance(e, str) for c, (o, e) in decoded.items())


@settings(max_examples=500, deadline=None)
@given(found=positions)
def test_an_encoded_id_decodes_to_its_positions(found):
    assert codec.decode_id(codec.encode_id(found)) == found


async def first_events(response: Any) -> list[tuple[str, Any]]:
    """Events up to ``subscribed`` or an ``error`` (the stream is then left)."""
    events: list[tuple[str, Any]] = []
    name, data = None, []
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode()
        if line == "":
            return events
        line = line.rstrip("\n")
        if line == "":
            if name is not None:
                events.append((name, json.loads("\n".join(data))))
                if name in ("subscribed", "error"):
                    return events
            name, data = None, []
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


@FUZZ
@given(params=query, last_event_id=st.none() | event_ids, cookie=st.booleans())
async def test_any_request_gets_a_stream_or_a_coded_error(stagewire, params, last_event_id, cookie):
    token = await stagewire.token("sam")
    headers = {"Cookie": f"stagewire_sse={token}"} if cookie else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with stagewire.http.get(f"{stagewire.url}/sse", params=params, headers=headers) as response:
        assert response.status != 500, await response.text()
        if response.status != 200:
            error = (await response.json())["error"]
            assert error["code"] in CODES and error["code"] != ErrorCode.INTERNAL, error
            assert isinstance(error["message"], str) and "Traceback" not in error["message"]
            return
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await first_events(response)
    assert events, "the stream said nothing"
    name, data = events[-1]
    if name == "error":
        assert data["error"]["code"] in CODES and data["error"]["code"] != ErrorCode.INTERNAL, data
    else:
        assert name == "subscribed" and isinstance(data["channels"], dict), events
