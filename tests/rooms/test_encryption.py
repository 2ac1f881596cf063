"""Encryption at rest: no plaintext in the rows, reading unchanged, key rotation."""

from __future__ import annotations

import base64

import pytest
from tortoise import connections

from handlers.rooms.rekey import rekey_messages
from models.rooms import Message
from handlers.rooms.settings import RoomsSettings, rooms_section
from server.config import ConfigError, load_settings
from handlers.rooms.crypto import DecryptionError, Keyring, decode_key, key_id, new_key
from tests.rooms.conftest import NEW_KEY, OLD_KEY, create_room, rooms_settings

SECRET = "the eagle lands at dawn"


async def _raw_rows() -> list[dict]:
    return await connections.get("default").execute_query_dict(
        "SELECT id, room_id, body, key_id FROM room_messages ORDER BY id"
    )


async def _stop(sw) -> None:
    await sw.close_clients()
    await sw.server.close()


async def test_rows_hold_no_plaintext_and_reading_is_unchanged(make_stagewire, tmp_path, database_url):
    sw = await make_stagewire(rooms_settings(tmp_path, database_url, encrypt_at_rest=True, keys=[NEW_KEY]))
    alice = await sw.client("alice")
    room = await create_room(alice)
    await alice.result("subscribe", channel=room["channel"])
    sent = (await alice.result("messages.send", room=room["id"], body=SECRET))["message"]
    assert (await alice.recv_push("pub", channel=room["channel"]))["data"]["message"]["body"] == SECRET
    other = (await alice.result("messages.send", room=room["id"], body="x"))["message"]
    await alice.result("messages.edit", room=room["id"], message=other["id"], body=SECRET + " again")

    rows = await _raw_rows()
    assert [r["key_id"] for r in rows] == [key_id(decode_key(NEW_KEY))] * 2
    for row in rows:
        assert "eagle" not in row["body"] and "eagle".encode() not in base64.b64decode(row["body"])
    # Two encryptions of one text differ (random nonces).
    assert len({r["body"] for r in rows}) == 2

    got = await alice.result("messages.get", room=room["id"], message=sent["id"])
    assert got["message"]["body"] == SECRET
    page = await alice.result("messages.list", room=room["id"])
    assert [m["body"] for m in page["messages"]] == [SECRET, SECRET + " again"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_rotation_old_rows_still_read_then_rekey_retires_the_old_key(make_stagewire, tmp_path, database_url):
    before = await make_stagewire(rooms_settings(tmp_path, database_url))  # plaintext
    alice = await before.client("alice")
    room = await create_room(alice)
    await alice.result("messages.send", room=room["id"], body="plain")
    await _stop(before)

    old = await make_stagewire(rooms_settings(tmp_path, database_url, encrypt_at_rest=True, keys=[OLD_KEY]))
    alice = await old.client("alice")
    await alice.result("messages.send", room=room["id"], body="under the old key")
    await _stop(old)

    rotated_settings = rooms_settings(tmp_path, database_url, encrypt_at_rest=True, keys=[OLD_KEY, NEW_KEY])
    rotated = await make_stagewire(rotated_settings)
    alice = await rotated.client("alice")
    await alice.result("messages.send", room=room["id"], body="under the new key")
    page = await alice.result("messages.list", room=room["id"])
    assert [m["body"] for m in page["messages"]] == ["plain", "under the old key", "under the new key"]
    old_id, new_id = key_id(decode_key(OLD_KEY)), key_id(decode_key(NEW_KEY))
    assert [r["key_id"] for r in await _raw_rows()] == [None, old_id, new_id]

    assert await rekey_messages(rooms_section(rotated_settings), batch=2) == 2
    assert [r["key_id"] for r in await _raw_rows()] == [new_id] * 3
    assert await rekey_messages(rooms_section(rotated_settings)) == 0
    await _stop(rotated)

    only_new = await make_stagewire(rooms_settings(tmp_path, database_url, encrypt_at_rest=True, keys=[NEW_KEY]))
    alice = await only_new.client("alice")
    page = await alice.result("messages.list", room=room["id"])
    assert [m["body"] for m in page["messages"]] == ["plain", "under the old key", "under the new key"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_ciphertext_moved_to_another_room_does_not_read(make_stagewire, tmp_path, database_url):
    sw = await make_stagewire(rooms_settings(tmp_path, database_url, encrypt_at_rest=True, keys=[OLD_KEY]))
    alice = await sw.client("alice")
    first, second = await create_room(alice, "one"), await create_room(alice, "two")
    sent = (await alice.result("messages.send", room=first["id"], body=SECRET))["message"]
    # Copying a ciphertext into another room's message does not carry the text over.
    await alice.result("messages.send", room=second["id"], body="mine")
    row = await Message.get(id=sent["id"])
    await Message.filter(room_id=second["id"]).update(body=row.body, key_id=row.key_id)
    error = await alice.assert_error(100, "messages.list", room=second["id"])
    assert "decrypted" in error["message"] and SECRET not in str(error)


def test_keyring():
    old, new = decode_key(OLD_KEY), decode_key(NEW_KEY)
    ring = Keyring([old, new])
    kid, blob = ring.encrypt(b"text", b"aad")
    assert kid == ring.current_id == key_id(new) and kid in ring and key_id(old) in ring
    assert ring.decrypt(kid, blob, b"aad") == b"text"
    with pytest.raises(DecryptionError):
        ring.decrypt(kid, blob, b"other aad")
    with pytest.raises(DecryptionError):
        ring.decrypt(kid, blob[:-1] + bytes([blob[-1] ^ 1]), b"aad")
    with pytest.raises(DecryptionError, match="no key"):
        Keyring([old]).decrypt(kid, blob, b"aad")
    assert len(decode_key(new_key())) == 32
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            decode_key(bad)


def test_rooms_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="needs rooms.keys"):
        RoomsSettings(encrypt_at_rest=True)
    with pytest.raises(ConfigError, match="32 random bytes"):
        RoomsSettings(keys=("c2hvcnQ=",))
    env = {"STAGEWIRE_ROOMS__KEYS": f"{OLD_KEY},{NEW_KEY}", "STAGEWIRE_ROOMS__ENCRYPT_AT_REST": "true"}
    config = tmp_path / "config.toml"
    config.write_text("")
    settings = load_settings(config, environ=env)
    rooms = rooms_section(settings)
    assert rooms.keys == (OLD_KEY, NEW_KEY) and rooms.encrypt_at_rest is True
