"""Running ``stagewire`` commands in-process: exit status, stdout and stderr.

Database commands get a fresh SQLite file through ``STAGEWIRE_DATABASE__URL``
and run from an empty directory, so no ``config.toml`` is read. Commands that
talk to a live server run in a worker thread (they call ``asyncio.run``)
while the test's event loop serves them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import pytest

from server.cli.main import main

SECRET_ENV = ("STAGEWIRE_API_KEY", "STAGEWIRE_TOKEN", "STAGEWIRE_PASSWORD", "STAGEWIRE_CONFIG",
              "STAGEWIRE_URL", "STAGEWIRE_WS_URL")


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_main(argv: Sequence[str]) -> int:
    """``main(argv)``, returning its exit status instead of raising SystemExit."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db_url(tmp_path, monkeypatch) -> str:
    """A fresh SQLite database for the database commands, and cheap password hashing."""
    url = f"sqlite://{tmp_path}/cli.sqlite3"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAGEWIRE_DATABASE__URL", url)
    monkeypatch.setenv("STAGEWIRE_AUTH__PASSWORD_TIME_COST", "1")
    monkeypatch.setenv("STAGEWIRE_AUTH__PASSWORD_MEMORY_COST", "1024")
    return url


@pytest.fixture
def cli(capsys) -> Callable[..., Result]:
    """``cli("user", "list")``: run a command in this thread (no event loop may be running)."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = run_main(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def acli(capsys) -> Callable[..., Awaitable[Result]]:
    """``await acli("publish", ...)``: run a command in a thread while the test's server runs."""

    async def run(*argv: str) -> Result:
        capsys.readouterr()
        code = await asyncio.to_thread(run_main, argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
