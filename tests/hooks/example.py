"""The worked example of docs/examples/backend.py, run for real in a test: a free port, its own secret."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from tests.hooks.receiver import load_example
from tests.serverproc import free_port

SECRET = "example-webhook-secret"
backend = load_example("backend")


class ExampleBackend:
    def __init__(self, stagewire_ws: str = "ws://127.0.0.1:1/ws") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = backend.make_app(SECRET, stagewire_ws)
        self._runner: web.AppRunner | None = None

    async def start(self) -> "ExampleBackend":
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.app[backend.EVENTS]

    def stagewire_env(self) -> dict[str, str]:
        """What docs/examples/backend.py's docstring tells Stagewire, as STAGEWIRE_* variables."""
        return {
            "STAGEWIRE_PROXY__CONNECT": f"{self.url}/stagewire/connect",
            "STAGEWIRE_PROXY__REFRESH": f"{self.url}/stagewire/refresh",
            "STAGEWIRE_PROXY__RPC": f"{self.url}/stagewire/rpc",
            "STAGEWIRE_WEBHOOKS__0__URL": f"{self.url}/stagewire/webhooks",
            "STAGEWIRE_WEBHOOKS__0__EVENTS":
                "connect,disconnect,channel_occupied,channel_vacated,member_added,member_removed",
            "STAGEWIRE_WEBHOOKS__0__SECRET": SECRET,
            "STAGEWIRE_SERVER__ALLOWED_ORIGINS": self.url,
        }

    async def login(self, username: str, password: str) -> str:
        """Log in through the site's form; the session cookie's ``name=value``."""
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/login", data={"username": username, "password": password},
                                 allow_redirects=False) as r:
                assert r.status == 303, await r.text()
                return f"session={r.cookies['session'].value}"
