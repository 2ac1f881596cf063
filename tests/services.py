"""External services for tests: find them, or skip the test that needs them.

A test that needs a service calls ``require_redis()`` (or a fixture does) and
gets the URL to use. When the service is unreachable the test is skipped with
the reason, unless ``STAGEWIRE_REQUIRE_SERVICES=1`` (CI), where it fails: a CI
run must not pass by skipping. Each service's URL can be overridden from the
environment (``STAGEWIRE_TEST_REDIS_URL``, ...).

To add a service (PostgreSQL, MariaDB), add a :class:`Service` to ``SERVICES``
with a probe and a ``require_<name>()`` one-liner.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import pytest

REQUIRE_ENV = "STAGEWIRE_REQUIRE_SERVICES"
PROBE_TIMEOUT = 1.0


def _redis_probe(url: str) -> str | None:
    """PING over a plain socket; any RESP reply (even -NOAUTH) means Redis is there."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                      timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return str(exc)
    return None if reply[:1] in (b"+", b"-") else f"unexpected reply {reply[:20]!r}"


@dataclass(frozen=True)
class Service:
    name: str
    url_env: str
    default_url: str
    probe: Callable[[str], str | None]  # returns why the service is unusable, or None


SERVICES = {
    "redis": Service("Redis", "STAGEWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", _redis_probe),
}


@functools.cache
def _problem(name: str, url: str) -> str | None:
    return SERVICES[name].probe(url)


def require(name: str) -> str:
    """The URL of service ``name``; skips (or fails, in CI) when it is unreachable."""
    service = SERVICES[name]
    url = os.environ.get(service.url_env, service.default_url)
    problem = _problem(name, url)
    if problem is not None:
        reason = f"{service.name} is not reachable at {url}: {problem}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    return url


def require_redis() -> str:
    return require("redis")
