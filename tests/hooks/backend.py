"""A real backend for the proxy tests: an aiohttp app on a free port whose answers a test sets per path.

Each path answers with a function of the call's JSON body (a status and a
JSON body), by default ``200 {"result": {}}``; :meth:`Backend.hang` makes a
path never answer (until the backend stops). Every call is recorded with its
headers and the client's port, so a test can see what Stagewire forwarded and
whether it reused its connections.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import orjson
from aiohttp import web

from tests.serverproc import free_port

Answer = Callable[[dict[str, Any]], tuple[int, Any]]


class Backend:
    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self._answers: dict[str, Answer | None] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._app = app

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def answer(self, path: str, answer: Answer) -> None:
        self._answers[path] = answer

    def result(self, path: str, result: Any) -> None:
        self.answer(path, lambda body: (200, {"result": result}))

    def refuse(self, path: str, message: str = "refused by the test", status: int = 200) -> None:
        self.answer(path, lambda body: (status, {"error": {"message": message}}))

    def fail(self, path: str, status: int = 500) -> None:
        self.answer(path, lambda body: (status, {"oops": True}))

    def hang(self, path: str) -> None:
        self._answers[path] = None

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["path"] == path]

    async def start(self) -> "Backend":
        self._runner = web.AppRunner(self._app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        raw = await request.read()
        body = orjson.loads(raw)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.calls.append({"path": path, "body": body, "raw": raw, "headers": dict(request.headers),
                           "peer_port": peer[1] if peer else None})
        answer = self._answers.get(path, lambda body: (200, {"result": {}}))
        if answer is None:
            await self._release.wait()  # never answers while the test runs
            return web.Response(status=503)
        status, reply = answer(body)
        return web.Response(status=status, body=orjson.dumps(reply), content_type="application/json")
