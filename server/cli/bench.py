"""``stagewire bench SCENARIO [ARGS...]``: run a load scenario from ``bench/``.

A scenario is a module of the ``bench`` directory of the source tree that runs
as ``python -m bench.<name>`` (it has a ``__main__`` guard); its arguments are
passed through unchanged, for example::

    stagewire bench fanout --subscribers 100 1000 --seconds 5

Without a scenario, the available ones are listed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"


def add_commands(sub: Any) -> None:
    """Add ``bench`` to the ``stagewire`` subcommands."""
    bench = sub.add_parser("bench", help="run a benchmark scenario from bench/",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("scenario", nargs="?", help="e.g. fanout; none to list them")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed to the scenario")
    bench.set_defaults(func=run_bench)


def scenarios() -> list[str]:
    """The runnable modules of ``bench/``; helpers (no ``__main__`` guard) are left out."""
    if not BENCH_DIR.is_dir():
        return []
    return sorted(
        path.stem for path in BENCH_DIR.glob("*.py")
        if not path.stem.startswith("_") and 'if __name__ == "__main__":' in path.read_text("utf-8")
    )


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    available = scenarios()
    if not available:
        print(f"stagewire: no bench scenarios in {BENCH_DIR}: run from a source checkout", file=sys.stderr)
        return 1
    if args.scenario is None:
        print("scenarios: " + ", ".join(available))
        print("run one with: stagewire bench SCENARIO [--help | ARGS...]")
        return 0
    if args.scenario not in available:
        print(f"stagewire: unknown bench scenario {args.scenario!r} (one of: {', '.join(available)})",
              file=sys.stderr)
        return 2
    command = [sys.executable, "-m", f"bench.{args.scenario}", *args.args]
    try:
        return subprocess.call(command, cwd=ROOT)
    except KeyboardInterrupt:
        return 130
