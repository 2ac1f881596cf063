"""``ClusterCommandPipeline``: the broker's pipelined commands over a Redis Cluster.

The same contract as :class:`~server.broker.redis_pipeline.CommandPipeline`
(``submit`` is synchronous, and commands submitted in order reach Redis in
order), kept per master: one ``CommandPipeline`` per master, each command sent
to the master of its key's slot in the cluster client's slot map. The
broker's commands name one slot each (a script's keys share the channel's hash
tag; SPUBLISH names its shard channel), so each command goes to one master,
and the commands of one channel keep their order.

A command sent to a master that no longer serves its slot (the map was stale:
a reshard or a failover) is answered ``MOVED`` or ``ASK`` and did not run. It
is then run once through the cluster client, which follows the redirection
and updates the slot map that the next commands are routed by. Only such a
redirected command can overtake one submitted before it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine

from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError

from server.broker.base import BrokerUnavailable
from server.broker.redis_client import RedisClient
from server.broker.redis_pipeline import CommandPipeline

_SCRIPTS = {"EVAL", "EVALSHA"}


class ClusterCommandPipeline:
    """Pipelined commands of one node, one ``CommandPipeline`` per master.

    Args:
        client: the node's Redis client, in cluster mode; its slot map routes
            the commands.
    """

    def __init__(self, client: RedisClient) -> None:
        cluster = client.cluster
        if cluster is None:
            raise TypeError("ClusterCommandPipeline needs a Redis Cluster client (broker.cluster_nodes)")
        self._client = client
        self._cluster = cluster
        self._pipelines: dict[str, CommandPipeline] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.redirects = 0  # commands answered MOVED/ASK and run again through the cluster client

    @property
    def batches(self) -> int:
        return sum(pipeline.batches for pipeline in self._pipelines.values())

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command on the pipeline of its slot's master; the future gets its reply."""
        outer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            address = self._owner(args)
        except BrokerUnavailable as exc:
            outer.set_exception(exc)
            # Load the slot map for the next command (the first one, or after a loss).
            self._spawn(self._client_command("PING"))
            return outer
        inner = self._pipeline(address).submit(*args)
        inner.add_done_callback(lambda done: self._settle(done, outer, args))
        return outer

    async def execute(self, *args: Any) -> Any:
        return await self.submit(*args)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        pipelines, self._pipelines = list(self._pipelines.values()), {}
        await asyncio.gather(*(pipeline.close() for pipeline in pipelines))

    # -- internals ------------------------------------------------------------------

    def _owner(self, args: tuple[Any, ...]) -> str:
        if self._closed:
            raise BrokerUnavailable("the Redis broker is closed")
        command = str(args[0]).upper()
        if command in _SCRIPTS:
            if int(args[2]) < 1:
                raise ValueError("a script in a Redis Cluster needs a key to be routed by")
            key = args[3]
        else:
            key = args[1]  # SPUBLISH's shard channel, or any single-key command
        if isinstance(key, str):
            key = key.encode()
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(key))
        except (RedisError, RedisClusterException) as exc:
            raise BrokerUnavailable(f"Redis Cluster: {exc}") from exc
        return str(node.name)

    def _pipeline(self, address: str) -> CommandPipeline:
        pipeline = self._pipelines.get(address)
        if pipeline is None:
            pipeline = self._pipelines[address] = CommandPipeline(
                lambda: self._client.node_connection(address, Connection), label=f"commands-{address}"
            )
        return pipeline

    def _settle(self, inner: asyncio.Future[Any], outer: asyncio.Future[Any], args: tuple[Any, ...]) -> None:
        if outer.done():
            return
        if inner.cancelled():
            outer.cancel()
            return
        exc = inner.exception()
        if isinstance(exc, (MovedError, AskError)):
            # It did not run: the cluster client runs it where the slot is now.
            self.redirects += 1
            task = self._spawn(self._client_command(*args))
            task.add_done_callback(lambda done: _copy(done, outer))
        elif exc is not None:
            outer.set_exception(exc)
        else:
            outer.set_result(inner.result())

    async def _client_command(self, *args: Any) -> Any:
        async with self._client.command() as client:
            return await client.execute_command(*args)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_consume)
        return task


def _copy(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _consume(task: asyncio.Task[Any]) -> None:
    # A background slot-map load may fail: the command that asked for it has its answer already.
    if not task.cancelled():
        task.exception()
