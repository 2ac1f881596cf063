"""``RedisLoginLimiter``: the failed-login limit of a whole deployment, in Redis.

Redis layout, for ``P`` = ``[broker] prefix`` and a limiter key ``K``
(``user:<name>`` or ``ip:<address>``):

``P.login.{K}``
    Sorted set of the key's recent failures, scored by their time (ms, from
    Redis's clock); trimmed to the newest ``max_failures`` and expiring
    ``window`` after the newest.

Each key is its own hash tag, so a script touches one key, one slot, and runs
in Redis Cluster too. An attempt is checked and counted per key atomically
(one script: drop the expired, refuse if full, else add), so parallel guesses
on any number of nodes cannot all slip past the check. When the username is
accepted but the IP is refused, the username's count is taken back.

Times come from Redis (``TIME``), so nodes with skewed clocks share one window.
"""

from __future__ import annotations

import secrets

from server.auth.limiter import TooManyAttempts, limiter_keys
from server.broker.redis_client import RedisClient

# KEYS: the key's set. ARGV: max failures, window ms, member.
# Returns 0 when counted, else the milliseconds until a failure expires.
_ACQUIRE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= max then
  local oldest = redis.call('ZRANGE', KEYS[1], -max, -max, 'WITHSCORES')
  if #oldest == 0 then return window end  -- max is 0: nothing is ever allowed
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class RedisLoginLimiter:
    """A :class:`~server.auth.limiter.LoginLimiter` shared through the node's Redis client.

    Args:
        client: the node's Redis client (its prefix and timeouts apply);
            the limiter does not close it.
        max_failures: Failures allowed within ``window``; the next is refused.
        window: Seconds a failure is remembered.
    """

    def __init__(self, client: RedisClient, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._client = client
        self._prefix = client.settings.prefix
        self._window_ms = max(1, int(window * 1000))
        self._acquire = client.register_script(_ACQUIRE)

    async def acquire(self, ip: str | None, username: str) -> None:
        member = secrets.token_hex(8)
        counted: list[str] = []
        async with self._client.command() as client:
            for key in (self._key(k) for k in limiter_keys(ip, username)):
                wait_ms = await self._acquire(
                    keys=[key], args=[self.max_failures, self._window_ms, member], client=client
                )
                if wait_ms:
                    # Refused: what this attempt counted so far is taken back.
                    for done in counted:
                        await client.zrem(done, member)
                    raise TooManyAttempts(int(wait_ms) / 1000)
                counted.append(key)

    async def succeeded(self, ip: str | None, username: str) -> None:
        async with self._client.command() as client:
            pipe = client.pipeline(transaction=False)
            pipe.delete(self._key(f"user:{username}"))
            if ip:
                pipe.zpopmax(self._key(f"ip:{ip}"))
            await pipe.execute()

    def _key(self, key: str) -> str:
        return f"{self._prefix}.login.{{{key}}}"
