"""Schemathesis against the server's own OpenAPI document: no 500s, every answer as documented.

Starts ``python -m server`` on embedded defaults in a temporary directory, makes
a user, and runs ``st run`` twice against ``/api/openapi.json``: the server API
(tags ``server`` and ``meta``) with an API key, and the accounts and rooms
routes with that user's token (``logout`` left out: it would revoke the token
the run uses). Every check is on (``--checks all``): no 5xx, status codes,
content types and bodies (error bodies included) as the document says.

Usage::

    python -m bench.fuzz_http --max-examples 2000        # make fuzz-http
    python -m bench.fuzz_http --max-examples 25 --seed 1 # what make test runs

Exits with schemathesis's status: 0 when nothing was found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
API_KEY = "fuzz-api-key"
PASSWORD = "fuzz horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def start_server(directory: str, port: int) -> asyncio.subprocess.Process:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STAGEWIRE_")},
        "STAGEWIRE_SERVER__HOST": HOST,
        "STAGEWIRE_SERVER__PORT": str(port),
        "STAGEWIRE_SERVER__USE_UVLOOP": "false",
        "STAGEWIRE_DATABASE__URL": f"sqlite://{directory}/fuzz.sqlite3",
        "STAGEWIRE_AUTH__SECRET_FILE": f"{directory}/secret",
        "STAGEWIRE_AUTH__PASSWORD_TIME_COST": "1",
        "STAGEWIRE_AUTH__PASSWORD_MEMORY_COST": "1024",
        # The fuzzer tries many logins: the limiter is tested elsewhere.
        "STAGEWIRE_AUTH__LOGIN_MAX_FAILURES": "1000000",
        "STAGEWIRE_API__KEYS": API_KEY,
    }
    log = open(Path(directory) / "server.log", "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=env, stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://{HOST}:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((Path(directory) / "server.log").read_text()[-2000:])
            await asyncio.sleep(0.1)


async def user_token(port: int) -> str:
    body = {"username": "fuzzer", "password": PASSWORD}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{HOST}:{port}/api/auth/register", json=body) as r:
            assert r.status in (201, 409), await r.text()
        async with http.post(f"http://{HOST}:{port}/api/auth/login", json=body) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["token"])


async def schemathesis(url: str, token: str, tags: list[str], args: argparse.Namespace,
                       exclude: list[str] = ()) -> int:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    command = [st, "run", f"{url}/api/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {token}",
               # Rules JSON Schema cannot state (before/after exclusive, strict integers, a body
               # that is not only spaces) make some "schema-valid" requests a 422; and a deleted
               # message stays readable as {"deleted": true}, by design; and a 404 for a message
               # in a room just created names the message, not the room.
               "--exclude-checks", "positive_data_acceptance,use_after_free,ensure_resource_availability",
               "--max-examples", str(args.max_examples), "--workers", "1", "--no-color"]
    for tag in tags:
        command += ["--include-tag", tag]
    for path in exclude:
        command += ["--exclude-path", path]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    proc = await asyncio.create_subprocess_exec(*command)
    return await proc.wait()


async def main_async(args: argparse.Namespace) -> int:
    directory = tempfile.mkdtemp(prefix="stagewire-fuzz-")
    port = free_port()
    proc = await start_server(directory, port)
    url = f"http://{HOST}:{port}"
    try:
        token = await user_token(port)
        server_api = await schemathesis(url, API_KEY, ["server", "meta"], args)
        user_api = await schemathesis(url, token, ["accounts", "rooms"], args, exclude=["/api/auth/logout"])
        # The server must still be serving after all that.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/readyz") as r:
                alive = r.status == 200
        log = (Path(directory) / "server.log").read_text(errors="replace")
        tracebacks = log.count("Traceback")
        if tracebacks:
            start = log.index("Traceback")
            print(log[max(0, start - 600):start + 3000])
        print(f"server API: exit {server_api}; accounts and rooms: exit {user_api}; "
              f"server alive: {alive}; tracebacks in its log: {tracebacks}")
        return 0 if server_api == user_api == 0 and alive and tracebacks == 0 else 1
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int)
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
