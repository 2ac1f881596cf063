"""Dead letters: a receiver that keeps failing, ``stagewire webhooks list|retry``, and the server API."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.hooks.conftest import SECRET, hook_settings
from tests.serverproc import ROOT


async def stagewire_cli(tmp_path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m server *argv`` on the test server's database, as an operator would run it."""
    env = {
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
        "STAGEWIRE_DATABASE__URL": f"sqlite://{tmp_path}/stagewire.sqlite3",
        "STAGEWIRE_WEBHOOKS__0__URL": "http://127.0.0.1:1/hooks", "STAGEWIRE_WEBHOOKS__0__EVENTS": "publish",
        "STAGEWIRE_WEBHOOKS__0__SECRET": SECRET, "STAGEWIRE_WEBHOOKS__0__NAME": "test",
    }
    cwd = tmp_path / "cli"
    cwd.mkdir(exist_ok=True)
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server", *argv], cwd=cwd, env=env,
                                   capture_output=True, text=True, timeout=60)


async def test_failing_events_become_dead_letters_that_the_cli_lists_and_resends(make_stagewire, tmp_path,
                                                                                  receiver):
    receiver.status = 500
    sw = await make_stagewire(hook_settings(tmp_path, receiver.url, events=("publish",), channels=("news",),
                                            hooks={"max_attempts": 3}))
    for i in range(3):
        assert (await sw.api("POST", "/api/publish", {"channel": "news:dead", "data": i}))[0] == 200
    for _ in range(200):
        status, body = await sw.api("GET", "/api/webhooks")
        if body["webhooks"] and body["webhooks"][0]["dead"] == 3:
            break
        await asyncio.sleep(0.05)
    assert body == {"webhooks": [{"webhook": "test", "url": receiver.url, "pending": 0, "dead": 3,
                                  "oldest_pending_ms": None}]}
    assert receiver.events == [] and receiver.refused >= 3

    listed = await stagewire_cli(tmp_path, "webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["WEBHOOK", "PENDING", "DEAD", "OLDEST", "PENDING"]
    assert lines[1].split()[:3] == ["test", "0", "3"]
    letters = [line.split() for line in lines[3:]]
    assert [(l[1], l[2], l[3], l[4]) for l in letters[1:]] == [("test", "publish", "news:dead", "3")] * 3
    assert "answered 500" in listed.stdout

    status, dead = await sw.api("GET", "/api/webhooks/dead?limit=2")
    assert status == 200 and [e["event"]["data"] for e in dead["events"]] == [0, 1]
    assert dead["events"][0]["attempts"] == 3 and dead["events"][0]["last_error"] == f"{receiver.url} answered 500"

    receiver.status = 204  # the receiver is fixed
    first = dead["events"][0]["id"]
    retried = await stagewire_cli(tmp_path, "webhooks", "retry", str(first))
    assert retried.returncode == 0 and retried.stdout.startswith("1 dead letter pending again"), retried.stderr
    await receiver.wait_for(lambda events: len(events) == 1)  # within poll_interval, no nudge
    assert receiver.events[0]["data"] == 0

    status, body = await sw.api("POST", "/api/webhooks/retry", {"webhook": "test"})
    assert (status, body) == (200, {"retried": 2})
    await receiver.wait_for(lambda events: len(events) == 3)
    assert [e["data"] for e in receiver.events] == [0, 1, 2]
    assert (await sw.api("GET", "/api/webhooks"))[1]["webhooks"][0]["dead"] == 0

    nothing = await stagewire_cli(tmp_path, "webhooks", "retry", "--all")
    assert nothing.returncode == 1 and "no such dead letters" in nothing.stderr
    usage = await stagewire_cli(tmp_path, "webhooks", "retry")
    assert usage.returncode == 1 and "--all" in usage.stderr


async def test_webhook_routes_need_an_api_key_and_valid_input(stagewire):
    for method, path in (("GET", "/api/webhooks"), ("GET", "/api/webhooks/dead"), ("POST", "/api/webhooks/retry")):
        status, body = await stagewire.api(method, path, {} if method == "POST" else None, key=None)
        assert status == 401 and body["error"]["code"] == 101
    status, body = await stagewire.api("POST", "/api/webhooks/retry", {"ids": "all"})
    assert status == 422 and "ids" in body["error"]["fields"]
    status, body = await stagewire.api("GET", "/api/webhooks/dead?limit=0")
    assert status == 422
    assert await stagewire.api("GET", "/api/webhooks") == (200, {"webhooks": []})
