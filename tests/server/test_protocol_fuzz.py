"""Property tests: no input makes the codec raise anything but ProtocolError."""

from __future__ import annotations

import msgpack
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from server import protocol
from server.errors import ProtocolError
from server.protocol import Encoding

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def decode_all(frame, encoding):
    try:
        messages = protocol.decode_frame(frame, encoding)
    except ProtocolError:
        return
    for message in messages:
        try:
            protocol.parse_command(message)
        except ProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_on_a_json_connection(frame):
    decode_all(frame, Encoding.JSON)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_any_bytes_on_a_msgpack_connection(frame):
    decode_all(frame, Encoding.MSGPACK)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=5))
def test_any_json_values_as_commands(values):
    decode_all("\n".join(orjson.dumps(v).decode() for v in values), Encoding.JSON)
    decode_all(b"".join(msgpack.packb(v) for v in values), Encoding.MSGPACK)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=2**53 - 1), st.text(min_size=1), st.dictionaries(st.text(), json_values, max_size=4))
def test_well_formed_commands_round_trip(command_id, command_type, params):
    params = {k: v for k, v in params.items() if k not in ("id", "type")}
    message = {"id": command_id, "type": command_type, **params}
    [decoded] = protocol.decode_frame(orjson.dumps(message).decode(), Encoding.JSON)
    assert protocol.parse_command(decoded) == protocol.Command(command_id, command_type, params)


def test_integers_too_big_for_64_bits_are_a_protocol_error():
    frame = '{"id": 1, "type": "publish", "channel": "chat:a", "data": 123456789012345678901234567890}'
    try:
        decode_all(frame, Encoding.JSON)
    except Exception as exc:  # pragma: no cover - the assertion below reports it
        raise AssertionError(f"raised {exc!r}") from exc
