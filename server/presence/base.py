"""The ``PresenceStore`` contract that every presence backend implements.

A presence store keeps, per channel, the clients subscribed to it on every
node, each with the user it belongs to. Entries expire ``ttl`` seconds after
they were added or last refreshed: each node refreshes its own clients well
within the TTL, so the clients of a node that died vanish within ``ttl``
seconds (plus one sweep interval of the surviving nodes).

Contract (checked by ``tests/presence/conformance.py`` for every backend):

* ``add`` and ``remove`` are atomic and report the *user-level* transition:
  ``add`` returns True when it added the user's first live client in the
  channel (the user joined); ``remove`` returns True when it removed the
  user's last one (the user left). Two tabs of one user join once, and the
  user leaves when the last tab closes.
* ``remove_many`` is ``remove`` for many entries at once (one round trip
  for a batch rather than one per entry), with one result per entry, in
  order; as if removed one after the other.
* ``expire`` removes entries past their TTL and returns the users whose last
  client expired, each exactly once across all nodes calling it concurrently.
* ``users`` and ``stats`` never count expired entries.
* **Member info.** An entry may carry ``info``, a JSON text describing its
  user (Pusher's ``user_info``). ``add`` stores it for the user atomically
  with the entry (the latest add with info wins); ``members`` returns every
  present user with the info stored for them (None when none was given), and
  a user's info is forgotten once the user has left (their last client removed
  or expired). Stores without info entries behave exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    channel: str
    client: str
    user: str
    # JSON text about the user, stored by add (see "Member info" above).
    info: str | None = field(default=None, compare=False)


class PresenceStore(Protocol):
    async def add(self, entry: PresenceEntry) -> bool:
        """Record a client in a channel; True if its user was not present before."""

    async def remove(self, entry: PresenceEntry) -> bool:
        """Forget a client; True if it was its user's last client in the channel."""

    async def remove_many(self, entries: Sequence[PresenceEntry]) -> list[bool]:
        """Forget many clients at once; for each, True if it was its user's last client in the channel."""

    async def refresh(self, entries: Iterable[PresenceEntry]) -> None:
        """Push back the expiry of live clients (each node refreshes its own)."""

    async def expire(self, channels: Iterable[str]) -> list[tuple[str, str]]:
        """Drop expired clients of ``channels``; ``(channel, user)`` for users now gone."""

    async def users(self, channel: str) -> dict[str, int]:
        """The users present and how many live clients each has."""

    async def stats(self, channel: str) -> tuple[int, int]:
        """``(clients, users)`` present in the channel."""

    async def members(self, channel: str) -> dict[str, str | None]:
        """The users present, each with the info stored for them (None if none)."""

    async def close(self) -> None:
        """Release resources."""
