"""The dispatcher under Hypothesis: any frame, or any command built from known parts, gets coded replies.

The same harness as ``bench/fuzz_ws.py`` (atheris, 10⁶ inputs with ``make
fuzz-ws``), here at the volume ``make test`` can afford.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, AsyncIterator

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_ws import COMMAND_TYPES, NAMESPACES, PARAM_NAMES, Harness, fuzz_settings
from server.protocol import Encoding

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.builds(lambda ns, name: f"{ns}:{name}", st.sampled_from(NAMESPACES), st.text(max_size=10)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(PARAM_NAMES), children, max_size=3),
    max_leaves=8,
)
commands = st.builds(
    lambda id_, type_, params: {**params, "id": id_, "type": type_},
    st.integers(0, 2**53), st.sampled_from(COMMAND_TYPES), st.dictionaries(st.sampled_from(PARAM_NAMES), json_values, max_size=4),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
async def harness(tmp_path) -> AsyncIterator[tuple[Harness, Any]]:
    h = Harness(fuzz_settings(str(tmp_path)))
    await h.start()
    loop = asyncio.get_running_loop()
    context = h.context
    assert isinstance(context, contextvars.Context)

    def run(encoding: Encoding, frame: str | bytes) -> Any:
        # Hypothesis calls the test synchronously: each input runs to completion on the test's loop.
        return loop.create_task(h.run(encoding, frame), context=context)

    yield h, run
    await h.close()


@FUZZ
@given(frame=st.binary(max_size=300))
async def test_any_bytes_on_a_msgpack_connection(harness, frame):
    h, run = harness
    Harness.check(await run(Encoding.MSGPACK, frame))


@FUZZ
@given(frame=st.text(max_size=300))
async def test_any_text_on_a_json_connection(harness, frame):
    h, run = harness
    Harness.check(await run(Encoding.JSON, frame))


@FUZZ
@given(batch=st.lists(commands, min_size=1, max_size=4), binary=st.booleans())
async def test_commands_built_from_known_parts(harness, batch, binary):
    h, run = harness
    if binary:
        replies = await run(Encoding.MSGPACK, b"".join(msgpack.packb(c) for c in batch))
    else:
        replies = await run(Encoding.JSON, "\n".join(orjson.dumps(c).decode() for c in batch))
    Harness.check(replies)
    answered = {m["id"] for m in replies if "id" in m}
    for command in batch:  # every command with a valid id is answered (the frame's first error may stop it)
        if 0 < command["id"] < 2**53 and command["type"] not in ("connect",) and not any(
            "error" in m and m.get("id") is None for m in replies
        ):
            assert command["id"] in answered, (command, replies)


async def test_the_check_refuses_an_internal_error():
    with pytest.raises(AssertionError, match="a handler crashed"):
        Harness.check([{"id": 1, "error": {"code": 100, "message": "internal error"}}])
    with pytest.raises(AssertionError):
        Harness.check([{"id": 1, "error": {"code": 999, "message": "?"}}])
