"""A real webhook receiver for the tests: an aiohttp app on a free 127.0.0.1 port.

It checks every POST with the documented verification function
(docs/examples/verify_webhook.py), or the one it is given (Pusher's
``validate_webhook`` for the webhooks of Pusher apps), keeps the bodies and the events in
arrival order, and can be told to fail (answer 500), to go away (stop
listening: connections are refused) and to come back on the same port.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import orjson
from aiohttp import web

from tests.serverproc import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def load_example(name: str) -> Any:
    """A module of docs/examples, loaded from its file (the examples are not a package)."""
    spec = importlib.util.spec_from_file_location(f"stagewire_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verify_webhook = load_example("verify_webhook").verify_webhook

Verify = Callable[[Mapping[str, str], bytes], "dict[str, Any] | None"]
"""(headers, body) → the verified payload, or None to answer 401."""


class Receiver:
    """See the module docstring. ``url`` stays the same across :meth:`stop` and :meth:`start`."""

    def __init__(self, secret: str, path: str = "/hooks", verify: Verify | None = None) -> None:
        self.secret = secret
        self._verify = verify or (lambda headers, body: verify_webhook(secret, body,
                                                                       headers.get("X-Stagewire-Signature")))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.status = 204
        self.posts: list[dict[str, Any]] = []  # {"headers", "body", "verified"}
        self.events: list[dict[str, Any]] = []
        self.refused = 0  # POSTs answered with an error status
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post(path, self._post)
        self._app = app

    async def start(self) -> "Receiver":
        self._runner = web.AppRunner(self._app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        """Stop listening: from now on connections are refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = self._verify(request.headers, body)
        self.posts.append({"headers": dict(request.headers), "body": body, "verified": payload is not None})
        if payload is None:
            return web.Response(status=401)
        if self.status >= 300:
            self.refused += 1
            return web.Response(status=self.status)
        async with self._changed:
            self.events.extend(payload["events"])
            self._changed.notify_all()
        return web.Response(status=self.status)

    def named(self, *names: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["name"] in names]

    async def wait_for(self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0,
                       what: str = "events") -> list[dict[str, Any]]:
        """Wait until ``condition(events)`` holds; fails with what arrived if it does not in time."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not condition(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{what} did not arrive within {timeout}s; got "
                                         f"{[(e['name'], e.get('channel'), e.get('user')) for e in self.events]}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass
        return self.events

    async def wait_names(self, *names: str, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
        """Wait until one event of each of ``names`` (matching ``match``) arrived; those events."""
        def found(events: list[dict[str, Any]]) -> bool:
            return all(any(e["name"] == n and all(e.get(k) == v for k, v in match.items()) for e in events)
                       for n in names)
        await self.wait_for(found, timeout, what=f"{names} {match}")
        return [e for e in self.events if e["name"] in names and all(e.get(k) == v for k, v in match.items())]


def decode(body: bytes) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(body)
    return result
