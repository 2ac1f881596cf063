"""``BackendHttp``: the node's one pooled HTTP client to webhook receivers and proxy backends.

One ``aiohttp.ClientSession`` per application (created and closed by the
hooks' cleanup context in ``server/app.py``), so connections to a backend are
kept alive and reused across calls. Every call is a POST of JSON bytes with a
total timeout; what it cost and how it ended are counted per *target* (a
proxy kind such as ``connect``, or ``webhook:<name>``) for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Mapping

import aiohttp

from server.ops.counters import LatencyHistogram

log = logging.getLogger("stagewire.hooks.http")

USER_AGENT = "Stagewire-Hooks/1"
#: Bytes of a backend's answer we read at most (a proxy decision or a webhook's "ok").
MAX_RESPONSE = 1024 * 1024


class BackendFailure(Exception):
    """The backend did not answer usably: unreachable, too slow, a 5xx, or a body too big."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # "timeout", "connection", "status", "invalid"
        self.detail = detail


@dataclass(slots=True)
class TargetStats:
    """Calls to one target: latency of the answered ones, and how the others failed."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class BackendHttp:
    """POSTs with a pooled session; see the module docstring."""

    def __init__(self, max_connections: int) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections,
                                         keepalive_timeout=30.0)
        self.session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}, auto_decompress=True,
        )
        self.stats: dict[str, TargetStats] = {}

    async def close(self) -> None:
        await self.session.close()

    def fail(self, target: str, reason: str) -> None:
        """Count a failure of ``target`` found after the call (a bad answer)."""
        stats = self.stats.setdefault(target, TargetStats())
        stats.failures[reason] = stats.failures.get(reason, 0) + 1

    async def post(self, target: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        """POST ``body`` (JSON) to ``url``; the answer, or :class:`BackendFailure` within ``timeout``.

        A 5xx is a failure; any other status is the backend's answer.
        """
        stats = self.stats.setdefault(target, TargetStats())
        stats.calls += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                async with self.session.post(
                    url, data=body, headers={"Content-Type": "application/json", **headers},
                    allow_redirects=False,
                ) as response:
                    data = await response.content.read(MAX_RESPONSE + 1)
                    status = response.status
        except TimeoutError:
            self.fail(target, "timeout")
            raise BackendFailure("timeout", f"no answer from {url} within {timeout}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            self.fail(target, "connection")
            raise BackendFailure("connection", f"{url}: {type(exc).__name__}: {exc}") from None
        stats.latency.observe(time.perf_counter() - started)
        if len(data) > MAX_RESPONSE:
            self.fail(target, "invalid")
            raise BackendFailure("invalid", f"{url}: answer over {MAX_RESPONSE} bytes")
        if status >= 500:
            self.fail(target, "status")
            raise BackendFailure("status", f"{url} answered {status}")
        return Answer(status, data)
