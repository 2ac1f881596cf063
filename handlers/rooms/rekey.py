"""Rewrite stored message bodies the way they would be written now.

After a new key became the encrypting one (last in ``[rooms] keys``), rows
sealed under older keys still read fine, but the old key cannot be dropped
until none is left. This rewrites them under the newest key; with
``encrypt_at_rest`` on it also encrypts rows stored before it was turned on,
and with it off it decrypts everything back to plaintext. Run it with the
same settings (and keys) as the servers, while they run::

    STAGEWIRE_ROOMS__KEYS="old,new" python -m handlers.rooms.rekey [--config config.toml]

It goes through the table in id order, a batch at a time, and rewrites a row
only if it has not changed since it was read, so an edit made meanwhile wins.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from handlers.rooms.bodies import BodyCodec
from models.db import close_db, init_db
from models.rooms import Message
from handlers.rooms.settings import RoomsSettings, rooms_section
from server.config import load_settings


async def rekey_messages(settings: RoomsSettings, batch: int = 500) -> int:
    """Rewrite every live body not stored as ``settings`` would store it; how many were."""
    codec = BodyCodec(settings)
    rewritten, last_id = 0, 0
    while True:
        rows = await Message.filter(id__gt=last_id, deleted_at__isnull=True).order_by("id").limit(
            batch
        ).values("id", "room_id", "body", "key_id")
        if not rows:
            return rewritten
        for row in rows:
            last_id = row["id"]
            if codec.is_current(row["key_id"]):
                continue
            body = codec.open(row["key_id"], row["body"], row["room_id"])
            key_id, text = codec.seal(body, row["room_id"])
            unchanged = Message.filter(id=row["id"], body=row["body"])
            unchanged = unchanged.filter(key_id=row["key_id"]) if row["key_id"] else unchanged.filter(
                key_id__isnull=True
            )
            rewritten += await unchanged.update(body=text, key_id=key_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.rooms.rekey", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="path to config.toml")
    parser.add_argument("--batch", type=int, default=500, help="rows read at a time")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)

    async def run() -> int:
        ctx = await init_db(settings, migrate=False)
        try:
            return await rekey_messages(rooms_section(settings), args.batch)
        finally:
            await close_db(ctx)

    print(f"{asyncio.run(run())} message bodies rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
