"""The client's codec, with plain strings and bytes: frames, messages, URLs, codes."""

from __future__ import annotations

import msgpack
import pytest
from stagewire_client import protocol
from stagewire_client.client import backoff, hinted_delay, refresh_delay
from stagewire_client.errors import CloseCode, ErrorCode, ProtocolViolation, StagewireError, should_reconnect
from stagewire_client.protocol import Encoding, Push, Reply


def test_a_json_frame_holds_one_message_per_line() -> None:
    frame = '{"id":1,"result":{}}\n{"type":"ping"}\n{"type":"pub","channel":"a:b","offset":3,"data":[1]}'
    messages = protocol.decode_frame(frame, Encoding.JSON)
    assert [protocol.parse_message(m) for m in messages] == [
        Reply(1, result={}),
        Push("ping", {"type": "ping"}),
        Push("pub", {"type": "pub", "channel": "a:b", "offset": 3, "data": [1]}),
    ]


def test_a_msgpack_frame_holds_concatenated_maps() -> None:
    frame = msgpack.packb({"id": 2, "result": {"offset": 1}}) + msgpack.packb({"type": "ping"})
    assert protocol.decode_frame(frame, Encoding.MSGPACK) == [{"id": 2, "result": {"offset": 1}}, {"type": "ping"}]


def test_commands_are_encoded_in_one_frame_per_encoding() -> None:
    commands = [protocol.command(1, "connect", {"token": "t"}), protocol.command(2, "ping")]
    assert protocol.encode(commands, Encoding.JSON) == (
        '{"token":"t","id":1,"type":"connect"}\n{"id":2,"type":"ping"}'
    )
    packed = protocol.encode(commands, Encoding.MSGPACK)
    assert isinstance(packed, bytes)
    assert protocol.decode_frame(packed, Encoding.MSGPACK) == commands


@pytest.mark.parametrize("frame,encoding", [
    (b"{}", Encoding.JSON),
    ("{}", Encoding.MSGPACK),
    ("{nope", Encoding.JSON),
    (msgpack.packb({"id": 1})[:-1], Encoding.MSGPACK),
])
def test_undecodable_frames_are_protocol_violations(frame: str | bytes, encoding: Encoding) -> None:
    with pytest.raises(ProtocolViolation):
        protocol.decode_frame(frame, encoding)


def test_error_replies_become_stagewire_errors() -> None:
    reply = protocol.parse_message({"id": 7, "error": {"code": 112, "message": "broker down", "temporary": True}})
    assert isinstance(reply, Reply) and reply.error is not None
    assert reply.error.code is ErrorCode.UNAVAILABLE and reply.error.temporary
    error = StagewireError.from_dict({"code": 107, "message": "invalid fields", "fields": {"channel": "bad"}})
    assert (error.code, error.fields, error.temporary) == (ErrorCode.BAD_REQUEST, {"channel": "bad"}, False)
    assert StagewireError.from_dict({"code": 999, "message": "new"}).code == 999


@pytest.mark.parametrize("message", [[1], {"id": "1", "result": {}}, {"no": "type"}])
def test_malformed_messages_are_protocol_violations(message: object) -> None:
    with pytest.raises(ProtocolViolation):
        protocol.parse_message(message)


def test_results_become_typed_values() -> None:
    assert protocol.position({"offset": 4, "epoch": "e"}) == protocol.Position(4, "e")
    history = protocol.history("a:b", {"offset": 2, "epoch": "e", "publications": [
        {"offset": 1, "data": "x", "info": {"user": "u"}}, {"offset": 2, "data": "y"}]})
    assert [(p.channel, p.offset, p.data, p.info) for p in history.publications] == [
        ("a:b", 1, "x", {"user": "u"}), ("a:b", 2, "y", None)]
    info = protocol.connect_info({"client": "c", "user": {"username": "u"}, "ping": 25, "expires_in": 9, "node": "n"})
    assert (info.client, info.ping, info.expires_in) == ("c", 25.0, 9)
    with pytest.raises(ProtocolViolation):
        protocol.position({"offset": "4"})


@pytest.mark.parametrize("url,ws,http", [
    ("http://h:8080", "ws://h:8080/ws", "http://h:8080"),
    ("https://h", "wss://h/ws", "https://h"),
    ("ws://h:8080/ws", "ws://h:8080/ws", "http://h:8080"),
    ("wss://h/prefix/ws", "wss://h/prefix/ws", "https://h/prefix"),
])
def test_urls_convert_between_websocket_and_http(url: str, ws: str, http: str) -> None:
    assert protocol.websocket_url(url) == ws
    assert protocol.http_url(url) == http


def test_encodings_are_named_by_short_name_or_subprotocol() -> None:
    assert Encoding.parse("json") is Encoding.JSON
    assert Encoding.parse("stagewire.msgpack") is Encoding.MSGPACK
    with pytest.raises(ValueError):
        Encoding.parse("xml")


@pytest.mark.parametrize("code,reconnect", [
    (1000, False), (1001, True), (1006, True), (1009, False),
    (CloseCode.SHUTDOWN, True), (CloseCode.TOKEN_EXPIRED, True), (4499, True),
    (CloseCode.BAD_REQUEST, False), (CloseCode.FORCE_DISCONNECT, False), (4999, False),
])
def test_close_codes_say_whether_to_reconnect(code: int, reconnect: bool) -> None:
    assert should_reconnect(code) is reconnect


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    for attempt in range(12):
        base = min(8.0, 0.5 * 2 ** attempt)
        assert 0 <= backoff(attempt, 0.5, 8.0) <= base
    assert backoff(10_000, 0.5, 8.0) <= 8.0
    samples = [backoff(3, 0.5, 8.0) for _ in range(2000)]
    # Anywhere in [0, 4]: the lower half too, not only the end of the step.
    assert min(samples) < 0.4 and max(samples) > 3.6


def test_a_reconnect_hint_is_a_random_wait_in_its_range() -> None:
    waits = [hinted_delay([1500, 2000]) for _ in range(200)]
    assert all(w is not None and 1.5 <= w <= 2.0 for w in waits)
    assert hinted_delay([0, 0]) == 0
    for bad in (None, [1], [5, 2], ["a", 3], [-1, 4], [True, 2], {"min": 1}):
        assert hinted_delay(bad) is None


def test_tokens_are_refreshed_a_little_before_they_expire() -> None:
    assert refresh_delay(3600) == 3540
    assert refresh_delay(10) == 9
    assert refresh_delay(0) == 0


def test_the_client_knows_every_server_code_by_the_same_name():
    """The client package stands alone, so it keeps its own copy of the codes: keep them equal."""
    from server import errors as server_errors
    from stagewire_client import errors as client_errors

    assert {c.name: int(c) for c in server_errors.ErrorCode} == {
        c.name: int(c) for c in client_errors.ErrorCode
    }
    server_close = {c.name: int(c) for c in server_errors.CloseCode}
    client_close = {c.name: int(c) for c in client_errors.CloseCode}
    assert server_close.items() <= client_close.items()
    for code in server_errors.CloseCode:
        assert client_errors.should_reconnect(int(code)) is code.reconnect, code
