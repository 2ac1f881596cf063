"""Structured logs: one JSON object per line, with connection and request ids, and no secrets."""

from __future__ import annotations

import json
import logging

import aiohttp

from server.ops import logs
from tests.helpers import connect_ws
from tests.serverproc import ServerProcess

PASSWORD = "a rather secret passphrase"


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.getLogger("stagewire.test").makeRecord(
        "stagewire.test", logging.INFO, __file__, 1, message, (), None, extra=extra or None
    )
    logs.ContextFilter().filter(record)
    return record


def test_json_lines_carry_the_context_ids_and_extras():
    conn = logs.conn_id.set("c0ffee")
    request = logs.request_id.set("c0ffee/7")
    try:
        line = logs.JsonFormatter().format(_record("connected", user="alice"))
    finally:
        logs.request_id.reset(request)
        logs.conn_id.reset(conn)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "connected" and entry["level"] == "INFO" and entry["logger"] == "stagewire.test"
    assert entry["conn"] == "c0ffee" and entry["request"] == "c0ffee/7" and entry["user"] == "alice"
    assert entry["time"].endswith("+00:00")


def test_json_lines_leave_out_unset_ids_and_fold_tracebacks():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    logs.ContextFilter().filter(record)
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert "conn" not in entry and "request" not in entry
    assert "ValueError: boom" in entry["exc"]


def test_text_format_shows_the_ids():
    conn = logs.conn_id.set("c0ffee")
    try:
        line = logs.TextFormatter().format(_record("hello"))
    finally:
        logs.conn_id.reset(conn)
    assert "stagewire.test [c0ffee]: hello" in line


async def test_serve_logs_json_with_ids_and_never_a_token_or_password(tmp_path):
    server = await ServerProcess(tmp_path, {"STAGEWIRE_SERVER__LOG_FORMAT": "json",
                                            "STAGEWIRE_SERVER__CONNECTION_LOG": "true"}).start()
    try:
        await server.register("alice", PASSWORD)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/auth/login",
                                 json={"username": "alice", "password": "wrong password"}) as r:
                assert r.status == 401
        token = await server.login("alice", PASSWORD)
        good = await connect_ws(server.ws_url)
        assert "result" in await good.call("connect", token=token)
        assert "result" in await good.call("subscribe", channel="chat:lobby")
        bad_token = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
        bad = await connect_ws(server.ws_url)
        assert (await bad.call("connect", token=bad_token))["error"]["code"] == 101
        await bad.recv_disconnect()
        await good.close()
        assert await server.stop() == 0
    finally:
        await server.kill()

    text = server.log_text()
    assert token not in text and bad_token not in text and PASSWORD not in text
    assert token.split(".")[0] not in text  # not even the payload part
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)

    logins = [e for e in entries if e["logger"] == "stagewire.http" and "/api/auth/login" in e["message"]]
    assert [e["status"] for e in logins] == [401, 200]
    assert all(len(e["request"]) == 12 for e in logins)
    connected = next(e for e in entries if e["message"] == "connected")
    assert connected["user"] == "alice" and connected["conn"] and connected["request"].startswith(connected["conn"] + "/")
    refused = next(e for e in entries if e["message"].startswith("connect refused"))
    assert refused["conn"] and refused["conn"] != connected["conn"] and refused["request"] == f'{refused["conn"]}/1'
    closed = [e for e in entries if e["message"] == "connection closed"]
    assert {e["conn"] for e in closed} >= {connected["conn"], refused["conn"]}


async def test_per_connection_lines_are_off_by_default_and_refusals_still_logged(tmp_path):
    server = await ServerProcess(tmp_path).start()
    try:
        await server.register("alice", PASSWORD)
        token = await server.login("alice", PASSWORD)
        good = await connect_ws(server.ws_url)
        assert "result" in await good.call("connect", token=token)
        bad = await connect_ws(server.ws_url)
        assert (await bad.call("connect", token=token + "x"))["error"]["code"] == 101
        await bad.recv_disconnect()
        await good.close()
        assert await server.stop() == 0
    finally:
        await server.kill()

    entries = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
    assert [e for e in entries if e["logger"] == "stagewire.connections"] == []
    assert any(e["message"].startswith("connect refused") for e in entries)
