"""``NodeDriver``: real pusher-js and laravel-echo clients in one Node process, driven from Python.

One process serves a whole test module (see tests/js/driver.mjs for its
commands). ``call`` sends a command and awaits its answer; ``expect`` awaits
a report matching some fields; authorization requests are answered by the
``authorize`` callback, which signs with the official ``pusher`` library.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any, Awaitable, Callable

from tests.npm import node_modules

DRIVER = __import__("pathlib").Path(__file__).resolve().parents[1] / "js" / "driver.mjs"
TIMEOUT = 10.0

Authorize = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NodeDriver:
    def __init__(self, proc: asyncio.subprocess.Process, authorize: Authorize | None) -> None:
        self.proc = proc
        self.authorize = authorize
        self.reports: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    async def start(cls, authorize: Authorize | None = None) -> "NodeDriver":
        modules = node_modules()
        script = modules.parent / "driver.mjs"
        shutil.copy(DRIVER, script)  # beside node_modules, so its imports resolve
        proc = await asyncio.create_subprocess_exec(
            "node", str(script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=modules.parent, limit=2**22,
        )
        driver = cls(proc, authorize)
        await driver.expect(type="ready")
        return driver

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            if "id" in message:
                future = self._replies.pop(message["id"])
                if "error" in message:
                    future.set_exception(AssertionError(f"driver: {message['error']}"))
                else:
                    future.set_result(message["result"])
                continue
            if message.get("type") == "auth" and self.authorize is not None:
                task = asyncio.create_task(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            async with self._changed:
                self.reports.append(message)
                self._changed.notify_all()

    async def _answer(self, request: dict[str, Any]) -> None:
        assert self.authorize is not None
        try:
            auth = await self.authorize(request)
            await self.call("auth_reply", request=request["request"], auth=auth)
        except Exception as exc:  # the client sees an authorization error
            await self.call("auth_reply", request=request["request"], error=str(exc))

    async def call(self, op: str, **params: Any) -> Any:
        assert self.proc.stdin is not None
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[self._next] = future
        self.proc.stdin.write((json.dumps({"id": self._next, "op": op, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(future, TIMEOUT)

    def _find(self, fields: dict[str, Any], start: int) -> dict[str, Any] | None:
        for report in self.reports[start:]:
            if all(report.get(k) == v for k, v in fields.items()):
                return report
        return None

    async def expect(self, timeout: float = TIMEOUT, since: int = 0, **fields: Any) -> dict[str, Any]:
        """The first report (from index ``since``) with these fields; waits for it."""
        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (found := self._find(fields, since)) is None:
                    await self._changed.wait()
                return found
        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no report {fields} in time; last: {self.reports[-8:]}") from None

    def matching(self, **fields: Any) -> list[dict[str, Any]]:
        return [r for r in self.reports if all(r.get(k) == v for k, v in fields.items())]

    def mark(self) -> int:
        """An index for ``expect(since=...)``: only what comes after now."""
        return len(self.reports)

    async def connect(self, client: str, server: Any, key: str, **options: Any) -> str:
        """A pusher-js client of ``server``, connected; its socket id."""
        host, port = server.url.rsplit("//", 1)[1].split(":")
        since = self.mark()
        await self.call("connect", client=client, key=key, host=host, port=int(port), **options)
        await self.expect(type="state", client=client, current="connected", since=since)
        return str(await self.call("socket_id", client=client))

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, *self._tasks, return_exceptions=True)
