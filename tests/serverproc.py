"""Real ``stagewire`` processes for tests: the one place that starts them.

:class:`ServerProcess` runs a server, ``python -m server`` or any command line
of the program (``stagewire serve --workers 2``), on ``127.0.0.1``:

* **Port**: a free one, or the one given; a restart keeps it.
* **Environment**: the test's, from :func:`process_env`: SQLite and the
  secret file in the test's directory, cheap password hashing, the port,
  then the test's overrides. The caller's own ``STAGEWIRE_*`` variables never
  leak in.
* **Readiness**: :meth:`~ServerProcess.start` returns once ``/readyz`` answered
  200 (from ``nodes`` distinct nodes, for ``--workers``); a process that exits
  or is not ready within :data:`READY_TIMEOUT` fails the test with the tail of
  its log, and is killed.
* **Log**: stdout and stderr go to ``<name>.log`` in the directory, a file
  rather than a pipe that could fill up and block; restarts append to it.
* **Stop**: :meth:`~ServerProcess.stop` sends SIGTERM and waits
  :data:`STOP_TIMEOUT` at most; a process still running then is killed and the
  test fails. :meth:`~ServerProcess.kill` is SIGKILL at once. Both also kill
  what the process started (a ``--workers`` parent's workers) if it outlived it.

:func:`run_command` runs a command to its end (``apikey create``, a ``serve``
that must refuse to start) and :func:`command_process` one that runs until the
test stops it (``tail``), with pipes; both in the same environment, bounded,
and killed when the test is done with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PASSWORD = "correct horse"
#: Seconds a server has to answer ``/readyz`` after it was started.
READY_TIMEOUT = 20.0
#: Seconds a server has to exit after SIGTERM.
STOP_TIMEOUT = 15.0
#: Seconds a command of :func:`run_command` has to finish.
COMMAND_TIMEOUT = 60.0
_POLL = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_command(*args: str) -> list[str]:
    """``python -m server *args`` with this interpreter: the program of this checkout."""
    return [sys.executable, "-m", "server", *args]


def stagewire_script() -> Path:
    """The ``stagewire`` console script installed beside this interpreter."""
    return Path(sys.executable).parent / "stagewire"


def process_env(directory: Path, env: Mapping[str, str] | None = None, *, port: int | None = None) -> dict[str, str]:
    """The environment of a stagewire process of one test (see the module docstring)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWIRE_")}
    settings = {
        "STAGEWIRE_SERVER__HOST": HOST,
        "STAGEWIRE_DATABASE__URL": f"sqlite://{directory}/db.sqlite3",
        "STAGEWIRE_AUTH__SECRET_FILE": str(directory / "secret"),
        "STAGEWIRE_AUTH__PASSWORD_TIME_COST": "1",
        "STAGEWIRE_AUTH__PASSWORD_MEMORY_COST": "1024",
    }
    if port is not None:
        settings["STAGEWIRE_SERVER__PORT"] = str(port)
    return {**inherited, **settings, **(env or {})}


class ServerProcess:
    """One server process (for ``--workers``, the parent) on ``127.0.0.1:<port>``.

    Args:
        directory: The test's directory: database, secret file and log.
        env: Environment overrides (``STAGEWIRE_*`` settings) for every start.
        port: The port; a free one by default.
        command: The command line; ``python -m server`` by default. The
            environment names the port, so ``stagewire serve`` needs no flags.
        name: Names the log file (``<name>.log``) and the process in failures.
    """

    def __init__(self, directory: Path, env: Mapping[str, str] | None = None, port: int | None = None, *,
                 command: Sequence[str] | None = None, name: str = "server") -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.name = name
        self.command = list(command or server_command())
        self.url = f"http://{HOST}:{self.port}"
        self.ws_url = f"ws://{HOST}:{self.port}/ws"
        self.log = self.directory / f"{name}.log"
        self.env = process_env(self.directory, env, port=self.port)
        self.proc: asyncio.subprocess.Process | None = None
        # Every process seen under this one (pid -> its start time), so that
        # workers are found after their parent died, and a reused pid is not.
        self._seen: dict[int, str] = {}

    @property
    def returncode(self) -> int | None:
        """The exit status of the last start, or ``None`` while it runs."""
        return self.proc.returncode if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    # -- starting -------------------------------------------------------------------

    async def start(self, nodes: int = 1) -> ServerProcess:
        """Start the command and wait until ``nodes`` node(s) answer ``/readyz``."""
        if self.running:
            raise AssertionError(f"{self.name} is already running")
        # Another process on the port would answer our readiness probe instead.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, self.port))
            except OSError as exc:
                raise AssertionError(f"port {self.port} is taken: {exc}") from None
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, cwd=ROOT, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        try:
            await self.ready_nodes(nodes)
        except BaseException:
            await self.kill()
            raise
        self._note_descendants()  # workers are up once their nodes answered
        return self

    async def restart(self, nodes: int = 1) -> ServerProcess:
        """Stop (SIGTERM) and start again: same port, same database and secrets."""
        await self.stop()
        return await self.start(nodes)

    async def ready_nodes(self, count: int = 1) -> set[str]:
        """Wait until ``/readyz`` answered 200 from ``count`` distinct nodes; their ids."""
        nodes: set[str] = set()
        deadline = time.monotonic() + READY_TIMEOUT
        while len(nodes) < count:
            # A new connection each time, so that SO_REUSEPORT may pick another worker.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                try:
                    async with http.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            nodes.add((await r.json())["node"])
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
            if not self.running or time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} is not ready (exit status {self.returncode}, {len(nodes)}/{count} nodes):\n"
                    f"{self.log_tail()}"
                )
            await asyncio.sleep(_POLL)
        return nodes

    # -- stopping -------------------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        if self.running:
            assert self.proc is not None
            self._note_descendants()
            self.proc.send_signal(signum)

    async def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit status, once the process exits; fails after ``timeout``."""
        assert self.proc is not None, f"{self.name} was never started"
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name} still runs after {timeout} s:\n{self.log_tail()}") from None

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM (clients are told to reconnect) and the exit status.

        A process still running after ``timeout`` is killed, with whatever it
        started, and the test fails.
        """
        if self.proc is None:
            return 0
        self.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.log_tail()}") from None
        self._kill_leftovers()
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL now, for the process and everything it started."""
        if self.proc is None:
            return
        self._note_descendants()
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._kill_leftovers()

    def descendants(self) -> list[int]:
        """Pids of the running process's children, grandchildren, ... (workers of a parent)."""
        found: list[int] = []
        todo = [self.proc.pid] if self.running and self.proc is not None else []
        while todo:
            pid = todo.pop()
            for task in _tasks(pid):
                try:
                    children = [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
                except OSError:
                    continue
                found += children
                todo += children
        return found

    def _note_descendants(self) -> None:
        for pid in self.descendants():
            started = _start_time(pid)
            if started is not None:
                self._seen[pid] = started

    def _kill_leftovers(self) -> None:
        """SIGKILL the descendants seen earlier that outlived the process."""
        for pid, started in self._seen.items():
            if _start_time(pid) == started:  # the same process, not a reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._seen.clear()

    # -- reading ----------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    async def register(self, username: str, password: str = PASSWORD) -> None:
        """Register ``username`` (already registered is fine)."""
        async with aiohttp.ClientSession() as http:
            body = {"username": username, "password": password}
            async with http.post(f"{self.url}/api/auth/register", json=body) as r:
                assert r.status in (201, 409), await r.text()

    async def login(self, username: str, password: str = PASSWORD) -> str:
        """A token of ``username``."""
        async with aiohttp.ClientSession() as http:
            body = {"username": username, "password": password}
            async with http.post(f"{self.url}/api/auth/login", json=body) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["token"]


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` (field 22 of /proc/<pid>/stat), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


# -- commands that are not servers ------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    code: int
    out: str
    err: str


@contextlib.asynccontextmanager
async def command_process(args: Sequence[str], directory: Path, env: Mapping[str, str] | None = None, *,
                          port: int | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m server *args`` with pipes for stdout and stderr, killed if it still runs at the end."""
    proc = await asyncio.create_subprocess_exec(
        *server_command(*args), cwd=ROOT, env=process_env(Path(directory), env, port=port),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def run_command(args: Sequence[str], directory: Path, env: Mapping[str, str] | None = None, *,
                      port: int | None = None, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
    """Run ``python -m server *args`` to its end; its exit status and output."""
    async with command_process(args, directory, env, port=port) as proc:
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"stagewire {' '.join(args)} did not finish within {timeout} s") from None
    assert proc.returncode is not None
    return CommandResult(proc.returncode, out.decode(), err.decode())
