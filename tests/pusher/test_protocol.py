"""The pure Pusher codec and signatures: bytes and strings in, bytes and strings out."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from server.config import PusherAppSettings
from server.protocol import Encoding, encode, presence_push, pub_push
from server.pusher import protocol as pp
from server.pusher import signing
from server.sse import codec

APP = PusherAppSettings(id="1", key="k", secret="s")


def test_a_publication_becomes_one_pusher_event_with_its_name_and_string_data():
    payload = encode(pub_push("ns:orders", 3, {"id": 1}, {"event": "created"}), Encoding.PUSHER)
    assert json.loads(payload) == {"event": "created", "channel": "orders", "data": '{"id":1}'}
    plain = encode(pub_push("ns:orders", 4, "text", None), Encoding.PUSHER)
    assert json.loads(plain) == {"event": "message", "channel": "orders", "data": "text"}


def test_exclusions_and_user_ids_travel_in_the_encoding():
    payload = encode(pub_push("ns:private-x", 1, {}, {"event": "client-a", "socket_id": "1.2", "user_id": "u"}),
                     Encoding.PUSHER)
    excluded, event = pp.split_exclusion(payload)
    assert excluded == b"1.2" and json.loads(event)["user_id"] == "u"
    assert pp.split_exclusion(b'{"event":"x"}') == (None, b'{"event":"x"}')


def test_joins_and_leaves_are_members_only_on_presence_channels():
    added = encode(presence_push("join", "ns:presence-r", {"user": "a", "user_info": '{"n":1}'}), Encoding.PUSHER)
    assert json.loads(added) == {"event": "pusher_internal:member_added", "channel": "presence-r",
                                 "data": '{"user_id":"a","user_info":{"n":1}}'}
    removed = encode(presence_push("leave", "ns:presence-r", {"user": "a"}), Encoding.PUSHER)
    assert json.loads(json.loads(removed)["data"]) == {"user_id": "a"}
    assert encode(presence_push("join", "ns:public", {"user": "a"}), Encoding.PUSHER) == b""
    assert encode({"type": "ping"}, Encoding.PUSHER) == b""


def test_presence_data_embeds_member_info_as_stored():
    data = json.loads(pp.presence_data({"b": None, "a": '{"x":[1]}'}))
    assert data == {"presence": {"ids": ["a", "b"], "hash": {"a": {"x": [1]}, "b": None}, "count": 2}}


def test_data_strings_holding_objects_are_kept_as_objects():
    assert pp.data_from_pusher('{"a": 1}') == {"a": 1}
    assert pp.data_from_pusher("[1]") == [1]
    for text in ("42", '"quoted"', "plain", "{broken"):
        assert pp.data_from_pusher(text) == text
    assert pp.data_to_pusher({"a": 1}) == '{"a":1}' and pp.data_to_pusher("x") == "x"


@pytest.mark.parametrize("name,ok", [
    ("a-b_c=d@e,f.g;h", True), ("x" * 200, True), ("x" * 201, False), ("", False), ("a b", False),
    ("#server-to-user-u1", True), ("#other", False), ("é", False),
])
def test_channel_names(name, ok):
    assert pp.valid_channel(name) is ok


def test_decoding_refuses_what_is_not_an_event():
    assert pp.decode('{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\"}"}').data == {"channel": "a"}
    for frame in (b"{}", "nope", "[]", '{"data":1}', '{"event":"x","channel":1}'):
        with pytest.raises(pp.PusherError):
            pp.decode(frame)


def test_the_nodes_close_codes_map_into_pushers_ranges():
    assert pp.close_code(4000) == 4200 and pp.close_code(4001) == 4100 and pp.close_code(4502) == 4009
    assert pp.close_code(1009) == 1009


def test_channel_and_user_signatures_match_pushers_libraries():
    import pusher

    lib = pusher.Pusher(app_id="1", key="k", secret="s")
    assert lib.authenticate("private-a", "1.2")["auth"] == signing.channel_auth(APP, "1.2", "private-a")
    data = json.dumps({"user_id": "u"})
    assert lib.authenticate("presence-a", "1.2", {"user_id": "u"})["auth"] == signing.channel_auth(APP, "1.2", "presence-a", data)
    signed = lib.authenticate_user("1.2", {"id": "u"})
    assert signed["auth"] == signing.user_auth(APP, "1.2", signed["user_data"])
    assert signing.auth_matches(signed["auth"], signing.user_auth(APP, "1.2", signed["user_data"]))
    assert not signing.auth_matches(None, "k:x") and not signing.auth_matches("k:y", "k:x")


def test_shared_secrets_match_pushers_libraries():
    import base64

    import pusher.crypto

    master = base64.b64encode(b"m" * 32).decode()
    expected = base64.b64encode(pusher.crypto.generate_shared_secret(b"private-encrypted-x", b"m" * 32)).decode()
    assert signing.shared_secret("private-encrypted-x", master) == expected


def request_params(body: bytes, timestamp: float, secret: str = "s") -> dict[str, str]:
    params = {"auth_key": "k", "auth_timestamp": str(int(timestamp)), "auth_version": "1.0",
              "body_md5": hashlib.md5(body).hexdigest()}
    text = "\n".join(["POST", "/apps/1/events", "&".join(f"{k}={v}" for k, v in sorted(params.items()))])
    return {**params, "auth_signature": signing.sign(secret, text)}


def test_request_signatures_and_their_clock():
    now = time.time()
    body = b'{"name":"e"}'
    signing.check_request(APP, "POST", "/apps/1/events", request_params(body, now), body, now)
    for params, why in ((request_params(body, now - 601), "Timestamp expired"),
                        (request_params(body, now, secret="x"), "Invalid signature"),
                        ({**request_params(body, now), "auth_key": "other"}, "auth_key"),
                        ({**request_params(body, now), "body_md5": "0" * 32}, "body_md5")):
        with pytest.raises(signing.SignatureError, match=why):
            signing.check_request(APP, "POST", "/apps/1/events", params, body, now)


def test_sse_events_ids_and_heartbeats():
    payload = encode(pub_push("news:a", 7, {"x": 1}, None), Encoding.SSE)
    channel, offset, event = codec.split_position(payload)
    assert (channel, offset) == ("news:a", 7)
    assert event == b'event: pub\ndata: {"channel":"news:a","offset":7,"data":{"x":1}}\n'
    assert encode({"type": "ping"}, Encoding.SSE) == b": ping\n\n"
    assert encode(presence_push("join", "c:a", {"user": "u"}), Encoding.SSE) == \
        b'event: join\ndata: {"channel":"c:a","info":{"user":"u"}}\n\n'
    positions = {"news:a": (7, "e1"), "chat:b": (0, "e2")}
    assert codec.decode_id(codec.encode_id(positions)) == positions
    for bad in ("", "not-base64!", codec.encode_id({}).replace("W", "x"), "W1sxLDIsM11d"):
        assert codec.decode_id(bad) in (None, {})
