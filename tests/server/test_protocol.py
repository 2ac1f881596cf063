"""The codec, fed plain strings and bytes: no network, no event loop."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from server import protocol
from server.errors import ErrorCode, ProtocolError, StagewireError
from server.protocol import Encoding


def test_json_frame_with_several_commands():
    frame = '{"id": 1, "type": "ping"}\n{"id": 2, "type": "subscribe", "channel": "chat:a"}\n'
    messages = protocol.decode_frame(frame, Encoding.JSON)
    commands = [protocol.parse_command(m) for m in messages]
    assert commands == [
        protocol.Command(1, "ping", {}),
        protocol.Command(2, "subscribe", {"channel": "chat:a"}),
    ]


def test_msgpack_frame_with_several_commands():
    frame = msgpack.packb({"id": 1, "type": "ping"}) + msgpack.packb({"id": 2, "type": "publish", "channel": "c:a", "data": [1]})
    commands = [protocol.parse_command(m) for m in protocol.decode_frame(frame, Encoding.MSGPACK)]
    assert commands[1] == protocol.Command(2, "publish", {"channel": "c:a", "data": [1]})


@pytest.mark.parametrize(
    "frame,encoding",
    [
        ("{not json", Encoding.JSON),
        ("", Encoding.JSON),
        ("\n\n", Encoding.JSON),
        (b"\xc1", Encoding.MSGPACK),
        (msgpack.packb({"id": 1, "type": "ping"})[:-2], Encoding.MSGPACK),
        # A whole command, then one cut off after its first key and value.
        (msgpack.packb({"id": 1, "type": "ping"}) + msgpack.packb({"id": 2, "type": "ping"})[:4], Encoding.MSGPACK),
        (b'{"id":1}', Encoding.JSON),
        ('{"id":1}', Encoding.MSGPACK),
        ("\n".join(['{"id":1,"type":"ping"}'] * 101), Encoding.JSON),
    ],
)
def test_undecodable_frames_raise_bad_request(frame, encoding):
    with pytest.raises(ProtocolError) as exc:
        protocol.decode_frame(frame, encoding)
    assert exc.value.code is ErrorCode.BAD_REQUEST
    assert exc.value.command_id is None


@pytest.mark.parametrize(
    "message,command_id",
    [
        ([1, 2], None),
        ("ping", None),
        ({"type": "ping"}, None),
        ({"id": "1", "type": "ping"}, None),
        ({"id": True, "type": "ping"}, None),
        ({"id": 0, "type": "ping"}, None),
        ({"id": -5, "type": "ping"}, None),
        ({"id": 1.5, "type": "ping"}, None),
        ({"id": 7}, 7),
        ({"id": 7, "type": ""}, 7),
        ({"id": 7, "type": 3}, 7),
    ],
)
def test_bad_envelopes(message, command_id):
    with pytest.raises(ProtocolError) as exc:
        protocol.parse_command(message)
    assert exc.value.code is ErrorCode.BAD_REQUEST
    assert exc.value.command_id == command_id


def test_encode_and_join_json():
    a = protocol.encode(protocol.reply(1, {"offset": 3}), Encoding.JSON)
    b = protocol.encode(protocol.pub_push("chat:a", 4, {"x": 1}, {"user": "al"}), Encoding.JSON)
    frame = protocol.join_messages([a, b], Encoding.JSON)
    assert [orjson.loads(line) for line in frame.split(b"\n")] == [
        {"id": 1, "result": {"offset": 3}},
        {"type": "pub", "channel": "chat:a", "offset": 4, "data": {"x": 1}, "info": {"user": "al"}},
    ]


def test_encode_and_join_msgpack():
    parts = [protocol.encode({"type": "ping"}, Encoding.MSGPACK), protocol.encode(protocol.reply(2, None), Encoding.MSGPACK)]
    frame = protocol.join_messages(parts, Encoding.MSGPACK)
    assert list(msgpack.Unpacker(__import__("io").BytesIO(frame), raw=False)) == [{"type": "ping"}, {"id": 2, "result": {}}]


def test_error_reply_shapes():
    err = StagewireError(ErrorCode.UNAVAILABLE, "later", {"channel": "x"})
    assert protocol.error_reply(5, err) == {
        "id": 5,
        "error": {"code": 112, "message": "later", "fields": {"channel": "x"}, "temporary": True},
    }
    assert protocol.error_reply(None, err)["type"] == "error"


def test_disconnect_push():
    assert protocol.disconnect_push(4001, "slow", True) == {
        "type": "disconnect", "code": 4001, "reason": "slow", "reconnect": True
    }


def test_binary_data_is_not_json_compatible():
    with pytest.raises(ProtocolError):
        protocol.check_json_compatible({"blob": b"\x00"})
    with pytest.raises(ProtocolError):
        protocol.check_json_compatible({1: "int key"})
    protocol.check_json_compatible({"ok": [1, 2.5, None, "s", {"n": True}]})


def test_subprotocol_selects_encoding():
    assert protocol.encoding_for("stagewire.msgpack") is Encoding.MSGPACK
    assert protocol.encoding_for("stagewire.json") is Encoding.JSON
    assert protocol.encoding_for(None) is Encoding.JSON
