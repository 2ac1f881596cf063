"""A PostgreSQL of the test's own: a fresh cluster on a free port, to stop and start.

Fault tests never stop the shared PostgreSQL on 5432. ``PrivatePostgres`` runs
``initdb`` in the test's directory (as the ``postgres`` user when the tests run
as root, which PostgreSQL refuses to run as) and ``pg_ctl`` to start it and to
stop it abruptly (``-m immediate``: no shutdown checkpoint, open connections
cut, as a crash).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.services import REQUIRE_ENV


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_postgres_binaries() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``; skips (fails in CI) without them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    path = Path(found[-1]).parent if found else (Path(p).parent if (p := shutil.which("pg_ctl")) else None)
    if path is None or not (path / "initdb").exists():
        reason = "PostgreSQL's initdb and pg_ctl are not installed: the test runs a PostgreSQL of its own"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    return path


class PrivatePostgres:
    def __init__(self, directory: Path, bin_dir: Path) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.data = directory / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return list(command)

    async def _run(self, *command: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._as_owner(*command), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed: {out.decode(errors='replace')[-2000:]}")

    async def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        await self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8")

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        await self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options,
                        "-l", str(self.directory / "postgres.log"), "-w", "-t", "30", "start")

    async def stop(self) -> None:
        """Stop at once: connections are cut, nothing is flushed politely."""
        await self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    async def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            await self.stop()


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    bin_dir = require_postgres_binaries()
    # Not under pytest's tmp_path: the postgres user must be able to reach it.
    directory = Path(tempfile.mkdtemp(prefix="stagewire-pg-"))
    pg = PrivatePostgres(directory, bin_dir)
    try:
        await pg.init()
        await pg.start()
        yield pg
    finally:
        await pg.close()
        shutil.rmtree(directory, ignore_errors=True)
