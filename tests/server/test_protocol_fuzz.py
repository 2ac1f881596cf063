"""Property tests of the codec: every input decodes, or is refused with code 107.

For any frame, ``decode_frame`` and ``parse_command`` either return what the
frame holds, or raise :class:`ProtocolError` with ``ErrorCode.BAD_REQUEST``
(107 in ``docs/protocol.md``), from which ``error_reply`` builds an encodable
``{"error": {"code": int, "message": str}}``. Nothing else may escape: any
other exception fails the test. Frames built to be valid must decode to
exactly the values they were built from; frames built to be broken must be
refused.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import protocol
from server.errors import ErrorCode, ProtocolError
from server.protocol import MAX_COMMANDS_PER_FRAME, Command, Encoding

# The encodings of the native protocol (/ws); the Pusher and SSE shells have codecs of their own.
NATIVE = (Encoding.JSON, Encoding.MSGPACK)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
command_ids = st.integers(min_value=1, max_value=2**53 - 1)
# Envelopes that are sometimes right and often wrong in one field.
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "id": command_ids | st.integers(-(2**63), 2**63 - 1) | st.booleans()
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3) | st.none(),
        "type": st.text(max_size=8) | st.integers(-5, 5) | st.none(),
        "channel": st.text(max_size=8),
        "data": json_values,
    },
)


# -- the assertions ------------------------------------------------------------


def assert_refused(exc: ProtocolError, command_id: int | None = None) -> None:
    """A coded refusal whose reply (or ``error`` push) every client can decode."""
    assert type(exc.code) is ErrorCode, exc.code
    assert exc.code is ErrorCode.BAD_REQUEST, exc
    assert exc.command_id == command_id, exc
    reply = protocol.error_reply(exc.command_id, exc)
    if command_id is None:
        assert reply["type"] == "error" and "id" not in reply, reply
    else:
        assert reply["id"] == command_id, reply
    error = reply["error"]
    assert type(error["code"]) is int and error["code"] == ErrorCode.BAD_REQUEST, error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in error["message"]
    assert set(error) <= {"code", "message", "fields"}, error  # 107 is not temporary
    for encoding in NATIVE:
        payload = protocol.encode(reply, encoding)
        frame = payload if encoding.binary else payload.decode()
        assert protocol.decode_frame(frame, encoding) == [reply]


def expected_command(message: Any) -> Command | tuple[int | None, str]:
    """What ``parse_command`` must make of ``message``: a command, or (id of the error, bad field)."""
    if not isinstance(message, dict):
        return None, ""
    command_id = message.get("id")
    if type(command_id) is not int or not 0 < command_id < 2**53:
        return None, "id"
    command_type = message.get("type")
    if not isinstance(command_type, str) or not command_type:
        return command_id, "type"
    return Command(command_id, command_type, {k: v for k, v in message.items() if k not in ("id", "type")})


def assert_parses_as_specified(message: Any) -> Command | None:
    """``parse_command(message)`` returns the command it holds, or refuses it with the right id and field."""
    expected = expected_command(message)
    try:
        command = protocol.parse_command(message)
    except ProtocolError as exc:
        assert not isinstance(expected, Command), f"{message!r} is a valid command: {exc}"
        command_id, field = expected
        assert_refused(exc, command_id)
        if field:
            assert exc.fields is not None and field in exc.fields, exc.fields
        return None
    assert command == expected, message
    return command


def decode(frame: str | bytes, encoding: Encoding) -> list[Any] | None:
    """The frame's messages, each checked by ``parse_command``; ``None`` when the frame is refused."""
    try:
        messages = protocol.decode_frame(frame, encoding)
    except ProtocolError as exc:
        assert_refused(exc)
        return None
    assert 1 <= len(messages) <= MAX_COMMANDS_PER_FRAME, len(messages)
    for message in messages:
        assert_parses_as_specified(message)
        assert_reencodable(message, encoding)
    return messages


def assert_reencodable(message: Any, encoding: Encoding) -> None:
    """What was decoded can be sent on, as publication data is, in either encoding.

    JSON values always can. msgpack may carry what JSON cannot (bytes, integer
    map keys): ``check_json_compatible`` then refuses it with 107.
    """
    protocol.encode({"data": message}, Encoding.MSGPACK)
    if encoding is Encoding.MSGPACK:
        try:
            protocol.check_json_compatible(message)
        except ProtocolError as exc:
            assert_refused(exc)
            return
    protocol.encode({"data": message}, Encoding.JSON)


def json_frame_model(frame: str) -> list[Any] | None:
    """What a stagewire.json frame holds (``docs/protocol.md``): one JSON value per non-blank line."""
    lines = [line for line in frame.split("\n") if line.strip()]
    if not 1 <= len(lines) <= MAX_COMMANDS_PER_FRAME:
        return None
    try:
        return [orjson.loads(line) for line in lines]
    except orjson.JSONDecodeError:
        return None


def json_lines(values: list[Any]) -> str:
    return "\n".join(orjson.dumps(v).decode() for v in values)


def msgpack_frame(values: list[Any]) -> bytes:
    return b"".join(msgpack.packb(v, use_bin_type=True) for v in values)


# -- garbage: decoded as specified, or refused with 107 ---------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_on_a_json_connection(frame):
    assert decode(frame, Encoding.JSON) == json_frame_model(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(
    st.builds(lambda v: orjson.dumps(v).decode(), json_values | envelopes) | st.text(max_size=12) | st.sampled_from(["", " ", "\t", "{", "}", "[1,", '"x']),
    max_size=6,
))
def test_lines_of_json_and_garbage(lines):
    frame = "\n".join(lines)
    assert decode(frame, Encoding.JSON) == json_frame_model(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_any_bytes_on_a_msgpack_connection(frame):
    decode(frame, Encoding.MSGPACK)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1) | st.binary(min_size=1), st.sampled_from(NATIVE))
def test_a_frame_of_the_wrong_kind_is_refused(frame, encoding):
    if isinstance(frame, str) is (encoding is Encoding.JSON):
        frame = frame.encode() if isinstance(frame, str) else frame.decode("latin-1")
    assert decode(frame, encoding) is None


# -- frames built to be valid, and the same frames broken --------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values | envelopes, min_size=1, max_size=5))
def test_any_values_decode_to_themselves_and_parse_as_specified(values):
    assert decode(json_lines(values), Encoding.JSON) == values
    assert decode(msgpack_frame(values), Encoding.MSGPACK) == values


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values | envelopes, min_size=1, max_size=5), st.data())
def test_a_cut_msgpack_frame_keeps_whole_messages_or_is_refused(values, data):
    encoded = [msgpack.packb(v, use_bin_type=True) for v in values]
    frame = b"".join(encoded)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    boundaries = {sum(len(e) for e in encoded[:i]): i for i in range(1, len(encoded))}
    decoded = decode(frame[:cut], Encoding.MSGPACK)
    if cut in boundaries:
        assert decoded == values[: boundaries[cut]]
    else:  # empty, or a message cut in the middle
        assert decoded is None


@settings(max_examples=200, deadline=None)
@given(command_ids, st.text(min_size=1), st.dictionaries(st.text(), json_values, max_size=4), st.sampled_from(NATIVE))
def test_well_formed_commands_round_trip(command_id, command_type, params, encoding):
    params = {k: v for k, v in params.items() if k not in ("id", "type")}
    message = {"id": command_id, "type": command_type, **params}
    payload = protocol.encode(message, encoding)
    frame = payload if encoding.binary else payload.decode()
    [decoded] = decode(frame, encoding)
    assert protocol.parse_command(decoded) == Command(command_id, command_type, params)


@settings(max_examples=50, deadline=None)
@given(st.lists(command_ids, min_size=1, max_size=MAX_COMMANDS_PER_FRAME + 5), st.sampled_from(NATIVE))
def test_a_frame_holds_at_most_the_documented_number_of_commands(ids, encoding):
    payloads = [protocol.encode({"id": i, "type": "ping"}, encoding) for i in ids]
    joined = protocol.join_messages(payloads, encoding)
    decoded = decode(joined if encoding.binary else joined.decode(), encoding)
    if len(ids) <= MAX_COMMANDS_PER_FRAME:
        assert [protocol.parse_command(m).id for m in decoded] == ids
    else:
        assert decoded is None


@pytest.mark.parametrize("literal", [
    "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
])
def test_integers_beyond_64_bits_never_decode_as_integers(literal):
    # Older orjson refused them, newer versions read them as floats; either way
    # no handler gets an integer that msgpack could not encode for a subscriber.
    frame = f'{{"id": 1, "type": "publish", "channel": "chat:a", "data": {literal}}}'
    decoded = decode(frame, Encoding.JSON)
    if decoded is not None:
        [message] = decoded
        assert type(message["data"]) is float and message["data"] == float(literal)
