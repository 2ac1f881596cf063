"""``stagewire user``, ``apikey`` and ``migrate`` on a fresh SQLite database."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest

from models.apikey import key_hash
from server.auth.passwords import Passwords


def rows(db_url: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db_url.removeprefix("sqlite://")) as db:
        return db.execute(sql).fetchall()


def test_migrate_applies_every_migration(cli, db_url) -> None:
    result = cli("migrate")
    assert result.code == 0, result.err
    names = [name for (name,) in rows(db_url, "SELECT name FROM tortoise_migrations ORDER BY id")]
    files = sorted(p.stem for p in (Path(__file__).parents[2] / "models" / "migrations").glob("0*.py"))
    assert names == files
    assert rows(db_url, "SELECT COUNT(*) FROM api_keys") == [(0,)]


def test_user_create_list_and_set_role(cli, db_url, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    created = cli("user", "create", "Alice", "--password-stdin")
    assert created.code == 0, created.err
    assert created.out == "created user alice (user)\n"
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "battery staple")
    assert cli("user", "create", "root", "--role", "admin").code == 0

    listed = cli("user", "list").out.splitlines()
    assert listed[0].split() == ["USERNAME", "ROLE", "CREATED"]
    assert [line.split()[:2] for line in listed[1:]] == [["alice", "user"], ["root", "admin"]]

    assert cli("user", "set-role", "ALICE", "admin").out == "alice is now admin\n"
    assert cli("user", "list").out.splitlines()[1].split()[:2] == ["alice", "admin"]

    (password_hash,) = rows(db_url, "SELECT password_hash FROM users WHERE username = 'alice'")[0]
    assert asyncio.run(Passwords(time_cost=1, memory_cost=1024).verify(password_hash, "correct horse"))


@pytest.mark.parametrize("argv,stdin,message", [
    (["user", "create", "x!"], "correct horse\n", "invalid username"),
    (["user", "create", "bob", "--password-stdin"], "short\n", "invalid password: 8 to 256 characters"),
    (["user", "set-role", "nobody", "admin"], "", "no user named 'nobody'"),
])
def test_user_commands_refuse_in_one_line(cli, db_url, monkeypatch, argv, stdin, message) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    result = cli(*argv)
    assert result.code == 1
    assert result.err.startswith(f"stagewire: {message}")
    assert len(result.err.splitlines()) == 1


def test_user_create_refuses_a_taken_name_and_differing_passwords(cli, db_url, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\ncorrect horse\n"))
    assert cli("user", "create", "alice", "--password-stdin").code == 0
    taken = cli("user", "create", "ALICE", "--password-stdin")
    assert (taken.code, taken.err) == (1, "stagewire: user 'alice' already exists\n")
    answers = iter(["first password", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    differ = cli("user", "create", "bob")
    assert (differ.code, differ.err) == (1, "stagewire: the passwords differ\n")


def test_apikey_create_shows_the_key_once_and_stores_its_hash(cli, db_url) -> None:
    created = cli("apikey", "create", "ci")
    assert created.code == 0, created.err
    key = created.out.strip()
    assert len(key) >= 40 and "\n" not in key
    assert "shown only this once" in created.err
    assert rows(db_url, "SELECT name, key_hash, revoked_at FROM api_keys") == [("ci", key_hash(key), None)]

    listed = cli("apikey", "list")
    assert key not in listed.out
    assert [line.split()[0] for line in listed.out.splitlines()] == ["NAME", "ci"]
    assert listed.out.splitlines()[1].split()[-1] == "-"

    duplicate = cli("apikey", "create", "ci")
    assert (duplicate.code, duplicate.err) == (1, "stagewire: an API key named 'ci' already exists\n")
    assert cli("apikey", "create", "bad name").code == 1


def test_apikey_revoke(cli, db_url) -> None:
    cli("apikey", "create", "ci")
    revoked = cli("apikey", "revoke", "ci")
    assert (revoked.code, revoked.out) == (0, "revoked API key 'ci'\n")
    assert rows(db_url, "SELECT revoked_at IS NOT NULL FROM api_keys") == [(1,)]
    assert "already revoked" in cli("apikey", "revoke", "ci").out
    assert cli("apikey", "list").out.splitlines()[1].split()[-1] != "-"
    unknown = cli("apikey", "revoke", "nope")
    assert (unknown.code, unknown.err) == (1, "stagewire: no API key named 'nope'\n")


def test_database_commands_take_a_config_file(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "other.toml"
    config.write_text(f'[database]\nurl = "sqlite://{tmp_path}/other.sqlite3"\n')
    assert cli("apikey", "create", "k", "--config", str(config)).code == 0
    assert (tmp_path / "other.sqlite3").exists()


def test_database_failures_are_one_line_not_a_traceback(capsys, monkeypatch):
    from server.cli.main import main

    monkeypatch.setenv("STAGEWIRE_DATABASE__URL", "mongodb://127.0.0.1/x")
    with pytest.raises(SystemExit) as exc:
        main(["migrate"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "MongoDB is not supported" in err
