"""Python function calls per connect: a cost figure that does not drift with the machine.

``bench.connect`` times connects, and on a shared machine its ratios move
by more than most changes to the connect path. This counts instead: each
server (``python -m server`` on embedded defaults, and the bare prototype)
runs under ``cProfile``, switched on (SIGUSR1) for one warm round of
``--clients`` clients connecting, authenticating and subscribing as in
``bench.connect``, and off (SIGUSR2) after it. It reports the function calls
the server made per completed client, Python functions and calls into C
apart, and, with ``--top``, the Python functions that make Stagewire's extra
calls.

A call count is not a time: a call into C may cost more than ten Python
ones. It is the same from run to run within a few per cent (how many
connections each flush and each loop iteration serve varies with timing),
so a change to the connect path shows in it on any machine.

Usage::

    python -m bench.connect_calls --clients 1000 --top 15

127.0.0.1 only, bounded, stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import runpy
import signal
import sys
import tempfile
from pathlib import Path

from bench.connect import Proc, bare, free_port, login_sessions, measure, stagewire_env

INFLIGHT = 100


def profiled(module: str, args: list[str], out: str) -> None:
    """Run ``python -m module args`` with cProfile switched on by SIGUSR1 and dumped to ``out`` by SIGUSR2."""
    profile = cProfile.Profile()

    def start(*_: object) -> None:
        profile.enable()

    def stop(*_: object) -> None:
        profile.disable()
        profile.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


async def count(kind: str, clients: int, tmp: str) -> pstats.Stats:
    port = free_port()
    out = str(Path(tmp, f"{kind}.prof"))
    if kind == "bare":
        target = bare(port).command[2:]  # ["bench.bare_server", "--host", ..., "--port", ...]
        env = None
    else:
        target = ["server"]
        env = stagewire_env(tmp, port)
    server = Proc([sys.executable, "-m", "bench.connect_calls", "--serve", out, *target], port, env)
    await server.start()
    try:
        tokens = ["bare"] * clients if kind == "bare" else await login_sessions(port, clients)
        await measure(server, tokens, INFLIGHT)  # warm: the session cache, the code paths, the allocator
        os.kill(server.pid, signal.SIGUSR1)
        await measure(server, tokens, INFLIGHT)
        os.kill(server.pid, signal.SIGUSR2)
        for _ in range(100):
            if Path(out).exists():
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop()
    return pstats.Stats(out)


def per_function(stats: pstats.Stats, clients: int) -> dict[str, float]:
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    calls: dict[str, float] = {}
    for (file, line, name), (_, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        where = file.replace(root, "").split("site-packages" + os.sep)[-1]
        calls[f"{where}:{line}({name})"] = calls.get(f"{where}:{line}({name})", 0) + ncalls / clients
    return calls


def builtin(function: str) -> bool:
    """A call into C (``~:0(<built-in ...>)``, ``<method ...>``): cheaper than a Python frame."""
    return function.startswith("~:0(")


async def run(clients: int, top: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {kind: per_function(await count(kind, clients, tmp), clients) for kind in ("bare", "stagewire")}
    totals = {
        kind: {
            "python": round(sum(n for f, n in calls.items() if not builtin(f)), 1),
            "builtin": round(sum(n for f, n in calls.items() if builtin(f)), 1),
        }
        for kind, calls in figures.items()
    }
    extra = sorted(((round(n - figures["bare"].get(f, 0), 2), f)
                    for f, n in figures["stagewire"].items() if not builtin(f)), reverse=True)
    return {
        "clients": clients,
        "calls_per_connect": totals,
        "ratio_to_bare": {kind: round(totals["stagewire"][kind] / totals["bare"][kind], 2)
                          for kind in ("python", "builtin")},
        "stagewire_extra_python_calls": [{"calls": n, "function": f} for n, f in extra[:top] if n > 0],
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        profiled(sys.argv[3], sys.argv[4:], sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15, help="list the functions with the most extra calls")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.clients, args.top)), indent=1))


if __name__ == "__main__":
    main()
