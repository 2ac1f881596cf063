"""``stagewire publish`` and ``stagewire tail`` against a live server, and their errors."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from server.appkeys import NODE
from server.auth.tokens import TokenSigner
from tests.client.helpers import closed_port, eventually
from tests.conftest import API_KEY
from tests.serverproc import command_process, run_command


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


async def subscribed(sw, channel: str) -> None:
    await eventually(lambda: channel in sw.app[NODE].channel_counts(), f"a subscriber of {channel}")


async def publish(sw, channel, data):
    status, body = await sw.api("POST", "/api/publish", {"channel": channel, "data": data})
    assert status == 200, body


def expired_token() -> str:
    """Signed with the test server's secret two hours ago: genuine, but expired."""
    signer = TokenSigner(["test-secret"], 3600, clock=lambda: time.time() - 7200)
    return signer.issue(1, "00000000-0000-0000-0000-000000000000")[0]


# -- publish --------------------------------------------------------------------------


async def test_publish_goes_through_the_server_api(stagewire, acli) -> None:
    watcher = await stagewire.client("alice")
    await watcher.result("subscribe", channel="news:cli")
    result = await acli("publish", "news:cli", '{"headline": "hello"}', "--url", stagewire.url,
                        "--api-key", API_KEY)
    assert result.code == 0, result.err
    assert lines(result.out) == [{"channel": "news:cli", "offset": 1, "epoch": lines(result.out)[0]["epoch"]}]
    push = await watcher.recv_push("pub", channel="news:cli")
    assert push["data"] == {"headline": "hello"} and "info" not in push
    assert API_KEY not in result.out + result.err


async def test_publish_takes_the_key_from_the_environment(stagewire, acli, monkeypatch) -> None:
    monkeypatch.setenv("STAGEWIRE_API_KEY", API_KEY)
    result = await acli("publish", "news:env", "42", "--url", stagewire.url)
    assert result.code == 0, result.err
    assert lines(result.out)[0]["offset"] == 1


@pytest.mark.parametrize("argv,message", [
    (["publish", "news:x", "1", "--api-key", API_KEY, "--url", "http://127.0.0.1:{closed}"],
     "stagewire: cannot reach http://127.0.0.1:{closed}: connection refused"),
    (["publish", "nope:x", "1", "--api-key", API_KEY, "--url", "{url}"],
     "stagewire: unknown channel namespace 'nope' (nope:x)"),
    (["publish", "news:x", "1", "--api-key", "wrong", "--url", "{url}"],
     "stagewire: not authorized: invalid API key"),
    (["publish", "news:x", "not json", "--api-key", API_KEY, "--url", "{url}"],
     "stagewire: JSON argument is not valid JSON"),
    (["publish", "news:x", "1", "--url", "{url}"],
     "stagewire: no API key: pass --api-key or set STAGEWIRE_API_KEY"),
])
async def test_publish_errors_are_one_line(stagewire, acli, argv, message) -> None:
    values = {"url": stagewire.url, "closed": closed_port()}
    result = await acli(*[arg.format(**values) for arg in argv])
    assert result.code == 1
    assert result.err.startswith(message.format(**values)), result.err
    assert len(result.err.splitlines()) == 1 and result.out == ""


async def test_database_api_keys_work_until_revoked(stagewire, tmp_path, acli) -> None:
    # The server of the fixture keeps its database in tmp_path; the admin
    # commands run in another process, as an operator would run them.
    env = {"STAGEWIRE_DATABASE__URL": f"sqlite://{tmp_path}/stagewire.sqlite3"}

    created = await run_command(["apikey", "create", "backend"], tmp_path, env)
    assert created.code == 0, created.err
    key = created.out.strip()
    # "--api-key=KEY": a generated key may start with "-", which argparse would take for an option.
    published = await acli("publish", "news:db", "1", "--url", stagewire.url, f"--api-key={key}")
    assert published.code == 0, published.err

    revoked = await run_command(["apikey", "revoke", "backend"], tmp_path, env)
    assert revoked.code == 0, revoked.err
    refused = await acli("publish", "news:db", "2", "--url", stagewire.url, f"--api-key={key}")
    assert (refused.code, refused.err) == (1, "stagewire: not authorized: invalid API key\n")


# -- tail -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [[], ["--msgpack"]])
async def test_tail_prints_live_publications_as_json_lines(stagewire, acli, encoding) -> None:
    token = await stagewire.token("alice")
    tail = asyncio.create_task(acli("tail", "chat:tail", "--url", stagewire.ws_url, "--token", token,
                                    "--count", "2", *encoding))
    await subscribed(stagewire, "chat:tail")
    writer = await stagewire.client("bob")
    await writer.result("publish", channel="chat:tail", data={"text": "hi"})
    await publish(stagewire, "chat:tail", [1, "two"])
    result = await asyncio.wait_for(tail, 10)
    assert result.code == 0, result.err
    assert lines(result.out) == [
        {"channel": "chat:tail", "offset": 1, "data": {"text": "hi"}, "info": {"user": "bob"}},
        {"channel": "chat:tail", "offset": 2, "data": [1, "two"]},
    ]
    assert "tailing chat:tail from offset 0" in result.err
    assert token not in result.out + result.err


async def test_tail_logs_in_with_a_username(stagewire, acli, monkeypatch) -> None:
    await stagewire.register("alice")
    monkeypatch.setenv("STAGEWIRE_PASSWORD", "correct horse")
    tail = asyncio.create_task(acli("tail", "news:login", "--url", stagewire.url, "--username", "alice",
                                    "--count", "1"))
    await subscribed(stagewire, "news:login")
    await publish(stagewire, "news:login", "in")
    result = await asyncio.wait_for(tail, 10)
    assert result.code == 0, result.err
    assert [line["data"] for line in lines(result.out)] == ["in"]


async def test_tail_takes_the_token_from_the_environment(stagewire, acli, monkeypatch) -> None:
    monkeypatch.setenv("STAGEWIRE_TOKEN", await stagewire.token("alice"))
    tail = asyncio.create_task(acli("tail", "news:envtoken", "--url", stagewire.ws_url, "--count", "1"))
    await subscribed(stagewire, "news:envtoken")
    await publish(stagewire, "news:envtoken", 1)
    assert (await asyncio.wait_for(tail, 10)).code == 0


@pytest.mark.parametrize("channel,token,url,message", [
    ("news:x", "expired", "{ws}", "stagewire: token expired: log in again"),
    ("nope:x", "good", "{ws}", "stagewire: unknown channel namespace 'nope' (nope:x)"),
    ("news:x", "good", "ws://127.0.0.1:{closed}/ws", "stagewire: cannot reach ws://127.0.0.1:{closed}/ws: connection refused"),
    ("news:x", "good", "{http}/nothing-here", "stagewire: cannot reach {ws_base}/nothing-here: HTTP 404"),
    ("news:x", "bad", "{ws}", "stagewire: not authorized: invalid token"),
    ("news:x", "", "{ws}", "stagewire: no token: pass --token, set STAGEWIRE_TOKEN, or log in with --username"),
])
async def test_tail_errors_are_one_line(stagewire, acli, channel, token, url, message) -> None:
    tokens = {"expired": expired_token(), "good": await stagewire.token("alice"), "bad": "not-a-token", "": ""}
    values = {"ws": stagewire.ws_url, "http": stagewire.url, "closed": closed_port(),
              "ws_base": stagewire.ws_url.removesuffix("/ws")}
    argv = ["tail", channel, "--url", url.format(**values)]
    if tokens[token]:
        argv += ["--token", tokens[token]]
    result = await acli(*argv)
    assert result.code == 1
    assert result.err.startswith(message.format(**values)), result.err
    assert len(result.err.splitlines()) == 1 and result.out == ""
    if tokens[token]:
        assert tokens[token] not in result.err


async def test_tail_stops_quietly_on_ctrl_c(stagewire, tmp_path) -> None:
    token = await stagewire.token("alice")
    argv = ["tail", "news:sigint", "--url", stagewire.ws_url]
    async with command_process(argv, tmp_path, {"STAGEWIRE_TOKEN": token}) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        while b"tailing news:sigint" not in await asyncio.wait_for(proc.stderr.readline(), 30):
            pass
        await publish(stagewire, "news:sigint", {"n": 1})
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert json.loads(line) == {"channel": "news:sigint", "offset": 1, "data": {"n": 1}}
        proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stderr.read(), 10)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert b"Traceback" not in rest and token.encode() not in rest
