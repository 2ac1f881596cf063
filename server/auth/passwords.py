"""Password hashing with argon2id, kept off the event loop.

Hashing is deliberately slow and memory-hungry, so every call runs in a
worker thread, and a semaphore caps how many run at once: a burst of logins
must not take ``threads x memory_cost`` of RAM or starve other thread work.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.config import AuthSettings


#: The most common passwords (zxcvbn's list, 8 characters or more); see the file's header.
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt")


@functools.cache
def _common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    """Whether ``password`` (in any letter case) is one of the 10,000 most common ones."""
    return password.lower() in _common_passwords()


class Passwords:
    """Hashes and verifies passwords; all methods that hash are coroutines.

    Args:
        time_cost: argon2 passes over memory.
        memory_cost: argon2 memory, in KiB.
        parallelism: argon2 lanes; ``memory_cost`` must be at least 8 times this.
        max_concurrency: Hashes allowed to run at the same time.
    """

    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_cost: int = 65536,
        parallelism: int = 4,
        max_concurrency: int | None = None,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        self._slots = asyncio.Semaphore(max_concurrency or os.cpu_count() or 2)
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Passwords:
        """A hasher with the cost parameters of ``settings``."""
        return cls(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_cost,
            parallelism=settings.password_parallelism,
        )

    async def prepare(self) -> None:
        """Compute the dummy hash now, so that the first unknown login is not faster."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """The argon2 PHC string of ``password``, with a fresh salt."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``password_hash`` (a corrupt hash never matches)."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification, for a user that does not exist.

        Without this, a login for an unknown name would answer in microseconds
        and one for a real name in tens of milliseconds, revealing which
        names are registered.
        """
        await self.prepare()
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether ``password_hash`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
