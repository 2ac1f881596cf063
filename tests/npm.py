"""The npm packages of the tests (tests/js/package.json), installed once into ``.cache/npm``.

``node_modules()`` installs them from the npm registry the first time (or
when package.json changed) and returns the folder; every test that needs
pusher-js, laravel-echo or TypeScript shares that one install. Without node
and npm the tests skip with the reason, or fail with
``STAGEWIRE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "js" / "package.json"
CACHE = ROOT / ".cache" / "npm"
INSTALL_TIMEOUT = 300


def _unavailable(reason: str) -> None:
    if os.environ.get("STAGEWIRE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (STAGEWIRE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def node_modules() -> Path:
    """``.cache/npm/node_modules`` with tests/js/package.json's packages installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("node and npm are needed for the JavaScript client tests")
    CACHE.mkdir(parents=True, exist_ok=True)
    wanted = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    stamp = CACHE / ".installed"
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install, whoever asks first
        if not stamp.exists() or stamp.read_text() != wanted:
            shutil.copy(SOURCE, CACHE / "package.json")
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=CACHE, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
            )
            if done.returncode != 0:
                _unavailable(f"npm install failed: {done.stderr[-2000:]}")
            stamp.write_text(wanted)
    return CACHE / "node_modules"
