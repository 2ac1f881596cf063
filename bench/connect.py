"""Connect-rate benchmark: clients connecting, authenticating and subscribing, beside the bare prototype.

Each round starts ``--clients`` WebSocket clients (``bench/wsraw.py``) with
``--inflight`` handshakes in flight at any time. A client does the HTTP
upgrade, sends ``connect`` with its token, waits for the reply, sends
``subscribe`` with ``recover``, and waits for that reply; then it is done and
the next one starts. The figure is completed clients per second. The servers
run on free 127.0.0.1 ports, and their rounds are interleaved (bare,
stagewire, bare, stagewire, ...) so that both see the same machine:

* ``stagewire``: ``python -m server`` on embedded defaults (memory broker,
  SQLite in a temporary directory). Every client has its own login session,
  so each connect checks a different session. ``restart`` rounds run against
  a freshly started server, which filled its session cache from the database
  as it started (``[auth] session_cache_preload``, on by default): the clients
  of a restart. ``cold`` rounds run against a freshly started server without
  that, which has never seen the sessions: a client moving to another node,
  one that was already running when the client logged in. ``warm`` rounds
  reconnect the same sessions to the same server (its session cache knows them).
* ``bare``: the reference prototype ``python -m bench.bare_server``, no auth.

With ``--log-connections``, each round also has a warm round of a server with
``[server] connection_log = true`` writing its log to a file: the cost of the
per-connection log lines.

The server's and this load generator's CPU time are reported per round, so
the figures show which side was the limit, and so are connects per second of
the server's own CPU time (``per_server_cpu_s``): the cost of a connect,
whatever else the machine runs. The last lines give the ratios stagewire /
bare of both (medians over the rounds).

Usage::

    flock /tmp/stagewire-bench.lock python -m bench.connect --clients 1000 --inflight 100 --rounds 3

Everything is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.fanout import process_cpu_seconds
from bench.wsraw import RawWS, open_ws

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CHANNEL = "bench:connect"
PASSWORD = "bench-password"
#: Seconds one client may take to connect and subscribe before the round fails.
CLIENT_TIMEOUT = 30.0


class Proc:
    """A server process on ``port``, with its CPU and memory readings from /proc."""

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.command, self.port, self.log = command, port, log
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 60.0) -> float:
        """Start and wait for ``/readyz``; the seconds it took."""
        started = time.perf_counter()
        out = self.log.open("ab") if self.log is not None else None
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=out or asyncio.subprocess.DEVNULL,
        )
        if out is not None:
            out.close()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.command} exited with {self.proc.returncode}")
                try:
                    async with http.get(f"http://{HOST}:{self.port}/readyz") as r:
                        if r.status == 200:
                            return time.perf_counter() - started
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.command} is not ready after {timeout} s")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()

    async def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def status_kib(self, field: str) -> int:
        """A ``/proc/<pid>/status`` figure in KiB: ``VmRSS`` now, ``VmHWM`` the peak RSS."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stagewire_env(tmp: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "STAGEWIRE_SERVER__HOST": HOST,
        "STAGEWIRE_SERVER__PORT": str(port),
        "STAGEWIRE_DATABASE__URL": f"sqlite://{tmp}/bench.sqlite3",
        "STAGEWIRE_AUTH__SECRET_FILE": f"{tmp}/secret",
        # Logins are not what is measured: cheap hashing makes thousands of sessions quick to open.
        "STAGEWIRE_AUTH__PASSWORD_TIME_COST": "1",
        "STAGEWIRE_AUTH__PASSWORD_MEMORY_COST": "1024",
        "STAGEWIRE_AUTH__PASSWORD_PARALLELISM": "1",
        "STAGEWIRE_AUTH__LOGIN_MAX_FAILURES": "1000000",
        "STAGEWIRE_CLIENT__COMMAND_RATE": "1000000",
        "STAGEWIRE_CLIENT__COMMAND_BURST": "1000000",
        "STAGEWIRE_NAMESPACES__BENCH__HISTORY_SIZE": "10",
        **extra,
    }


def stagewire(tmp: str, port: int | None = None, log: Path | None = None, **extra: str) -> Proc:
    port = port or free_port()
    return Proc([sys.executable, "-m", "server"], port, stagewire_env(tmp, port, **extra), log)


def bare(port: int | None = None) -> Proc:
    port = port or free_port()
    return Proc([sys.executable, "-m", "bench.bare_server", "--host", HOST, "--port", str(port)], port)


async def login_sessions(port: int, count: int, users: int = 10) -> list[str]:
    """``count`` tokens, each of its own login session, over ``users`` users."""
    async with aiohttp.ClientSession() as http:
        for u in range(users):
            body = {"username": f"bench{u}", "password": PASSWORD}
            async with http.post(f"http://{HOST}:{port}/api/auth/register", json=body) as r:
                assert r.status in (201, 409), await r.text()
        sem = asyncio.Semaphore(20)

        async def one(i: int) -> str:
            async with sem:
                body = {"username": f"bench{i % users}", "password": PASSWORD}
                async with http.post(f"http://{HOST}:{port}/api/auth/login", json=body) as r:
                    assert r.status == 200, await r.text()
                    return str((await r.json())["token"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def connect_subscribe(port: int, token: str, channel: str = CHANNEL) -> RawWS:
    """Upgrade, ``connect``, ``subscribe`` with recovery; the open client."""
    ws = await open_ws(HOST, port)
    reply = await ws.call({"id": 1, "type": "connect", "token": token})
    if "result" not in reply:
        ws.transport.close() if ws.transport else None
        raise RuntimeError(f"connect failed: {reply}")
    reply = await ws.call({"id": 2, "type": "subscribe", "channel": channel, "recover": True,
                           "offset": 0, "epoch": ""})
    if "result" not in reply:
        raise RuntimeError(f"subscribe failed: {reply}")
    return ws


async def storm(port: int, tokens: list[str], inflight: int) -> tuple[list[RawWS], float]:
    """Every token connects and subscribes, ``inflight`` at a time; the clients and the seconds taken."""
    sem = asyncio.Semaphore(inflight)
    clients: list[RawWS] = []

    async def one(token: str) -> None:
        async with sem:
            clients.append(await asyncio.wait_for(connect_subscribe(port, token), CLIENT_TIMEOUT))

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tokens))
    return clients, time.perf_counter() - started


async def close_all(clients: list[RawWS]) -> None:
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(0.5)  # the server finishes its cleanups before the next round


async def measure(server: Proc, tokens: list[str], inflight: int) -> dict[str, float]:
    cpu_server, cpu_self = server.cpu_seconds(), own_cpu()
    clients, seconds = await storm(server.port, tokens, inflight)
    server_cpu = server.cpu_seconds() - cpu_server
    result = {
        "per_s": round(len(tokens) / seconds),
        # Connects per second of the server's own CPU time: the cost, whatever else the machine runs.
        "per_server_cpu_s": round(len(tokens) / server_cpu) if server_cpu > 0 else 0,
        "server_cpu": round(server_cpu / seconds, 2),
        "generator_cpu": round((own_cpu() - cpu_self) / seconds, 2),
    }
    await close_all(clients)
    return result


async def run(clients: int, inflight: int, rounds: int, warm: int, log_connections: bool = False) -> dict:
    results: dict[str, list[dict[str, float]]] = {
        "bare": [], "stagewire_restart": [], "stagewire_cold": [], "stagewire_warm": []}
    if log_connections:
        results["stagewire_warm_logged"] = []
    with tempfile.TemporaryDirectory() as tmp:
        reference = bare()
        await reference.start()
        try:
            for round_ in range(rounds):
                results["bare"].append(await measure(reference, ["bare"] * clients, inflight))
                print(f"round {round_ + 1} bare: {results['bare'][-1]}", file=sys.stderr)
                # Fresh servers each round: a restart (its cache filled as it starts), then one
                # with the preload off, whose cache is empty.
                for name in ("bench.sqlite3", "secret"):
                    Path(tmp, name).unlink(missing_ok=True)
                server = stagewire(tmp)
                await server.start()
                try:
                    tokens = await login_sessions(server.port, clients)
                    await server.stop()  # forget the sessions the logins cached
                    await server.start()  # and read them back as it starts
                    results["stagewire_restart"].append(await measure(server, tokens, inflight))
                    print(f"round {round_ + 1} stagewire restart: {results['stagewire_restart'][-1]}",
                          file=sys.stderr)
                finally:
                    await server.stop()
                server = stagewire(tmp, server.port, STAGEWIRE_AUTH__SESSION_CACHE_PRELOAD="false")
                await server.start()
                try:
                    results["stagewire_cold"].append(await measure(server, tokens, inflight))
                    print(f"round {round_ + 1} stagewire cold: {results['stagewire_cold'][-1]}", file=sys.stderr)
                    for _ in range(warm):
                        results["stagewire_warm"].append(await measure(server, tokens, inflight))
                        print(f"round {round_ + 1} stagewire warm: {results['stagewire_warm'][-1]}", file=sys.stderr)
                finally:
                    await server.stop()
                if log_connections:
                    # The same, with [server] connection_log on, its JSON lines written to a file.
                    logged = stagewire(tmp, server.port, Path(tmp, "server.log"), STAGEWIRE_SERVER__CONNECTION_LOG="true")
                    await logged.start()
                    try:
                        await measure(logged, tokens, inflight)  # fills the cache
                        results["stagewire_warm_logged"].append(await measure(logged, tokens, inflight))
                        print(f"round {round_ + 1} stagewire warm, connection log on: "
                              f"{results['stagewire_warm_logged'][-1]}", file=sys.stderr)
                    finally:
                        await logged.stop()
        finally:
            await reference.stop()
    summary = {
        figure: {
            kind: round(statistics.median(r[figure] for r in runs)
                        / statistics.median(r[figure] for r in results["bare"]), 2)
            for kind, runs in results.items() if runs and kind != "bare"
        }
        for figure in ("per_s", "per_server_cpu_s")
    }
    return {"clients": clients, "inflight": inflight, "runs": results, "ratio_to_bare": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=1, help="warm rounds after each cold one")
    parser.add_argument("--log-connections", action="store_true",
                        help="also warm rounds with [server] connection_log on (the cost of those lines)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    result = asyncio.run(run(args.clients, args.inflight, args.rounds, args.warm, args.log_connections))
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
