"""Sharded pub/sub over a Redis Cluster: one ``PubSubShard`` per master, channels routed by slot.

In a Redis Cluster a shard channel (SSUBSCRIBE/SPUBLISH) lives on the master
that serves its hash slot. ``ClusterPubSub`` keeps one pub/sub connection
(a :class:`~server.broker.redis_pubsub.PubSubShard`, with its reconnects and
heartbeat) per master that holds something, and sends each Redis channel to
the master of its slot in the cluster client's slot map. The broker sees one
object with the same ``hold``/``subscribe``/``unsubscribe`` surface as a shard.

The connections of the shards are :class:`_SlotConnection`: they split a
batched (S)SUBSCRIBE into one command per slot (Redis refuses a command whose
channels span slots), and they report what only a cluster does:

* **A slot moved** (a reshard): the old master ends the slot's subscriptions
  with a ``sunsubscribe`` that nobody asked for. The channel is re-routed:
  the slot map is reloaded and the channel subscribed on its new master.
* **A wrong master** (a stale slot map): ``-MOVED`` in answer to SSUBSCRIBE.
  The connection is dropped, like a lost one.
* **A master lost** (failover, or a restart): the shard reconnects, and every
  reconnect attempt reloads the slot map, so channels whose slot now has
  another master move there, and the shard left with nothing is closed.

The slot map is loaded from one node of the cluster, which may not have heard
of the change yet: after a ``CLUSTER FAILOVER`` it can still name the demoted
master, now a replica, and a replica accepts SSUBSCRIBE without ``-MOVED``
(and gets none of the new master's publications). So a node that ended a
subscription by itself, or that the shard reconnected to, is asked for its own
view (``CLUSTER NODES``) before a channel is placed on it. Where that node
says another master serves the slot, the map is corrected as a ``-MOVED``
would correct it (``NodesManager.move_slot``) and the channel goes there; a
channel whose slot has no master in that view is placed in a later round.

A channel moved to another master may have missed publications between the
two subscriptions, so once the new master confirms it the channel is passed
to ``on_gap``, as after any pub/sub reconnect: the node then catches up from
the channel's stream (which moved with the slot, having the same hash tag).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Callable, Hashable, Sequence

from redis.asyncio.cluster import RedisCluster, get_node_name
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException, RedisError, ResponseError

from server.broker.base import BrokerUnavailable
from server.broker.redis_client import RedisClient
from server.broker.redis_pubsub import SHARDED, PubSubShard, Timing

log = logging.getLogger("stagewire.broker.redis")


class _SlotConnection(Connection):
    """A pub/sub connection to one master: per-slot (S)SUBSCRIBE, and slot moves reported.

    Args:
        on_dropped: called with a channel the server unsubscribed by itself
            (its slot moved away).
    """

    def __init__(self, *, on_dropped: Callable[[bytes], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_dropped = on_dropped
        self._unsubscribing: set[bytes] = set()
        self._dropped: set[bytes] = set()  # unsubscribed by the server: not to be unsubscribed again
        self._subscribed = False  # in subscribed mode: the handshake's replies are behind us

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        command = args[0]
        if command not in (SHARDED.subscribe, SHARDED.unsubscribe) or len(args) < 2:
            await super().send_command(*args, **kwargs)
            return
        self._subscribed = True
        names = list(args[1:])
        if command == SHARDED.unsubscribe:
            # Its master no longer serves the slot and would answer MOVED.
            names = [name for name in names if name not in self._dropped]
            self._dropped.difference_update(args[1:])
            self._unsubscribing.update(names)
        else:
            self._dropped.difference_update(names)
        by_slot: dict[int, list[bytes]] = defaultdict(list)
        for name in names:
            by_slot[key_slot(name)].append(name)
        if not by_slot:
            return
        packed = self.pack_commands([(command, *names) for names in by_slot.values()])
        await self.send_packed_command(packed, check_health=False)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            reply = await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not self._subscribed:
                raise  # the handshake's (CLIENT SETINFO on an older Redis): redis-py handles it
            # MOVED (a stale slot map), CLUSTERDOWN...: no subscription of this
            # connection can be trusted, so it ends as a lost connection does.
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Redis Cluster refused a subscription: {exc}") from exc
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == SHARDED.unsubscribe.lower().encode():
            name = reply[1]
            if name in self._unsubscribing:
                self._unsubscribing.discard(name)
            else:
                self._dropped.add(name)
                self._on_dropped(name)
        return reply


class ClusterPubSub:
    """The pub/sub connections of one node to a Redis Cluster, one per master in use.

    Args:
        client: the node's Redis client, in cluster mode.
        timing: timeouts and backoff, for every shard and for reloading the slot map.
        on_message: as for a :class:`PubSubShard`.
        on_gap: as for a :class:`PubSubShard`; also called for channels moved
            to another master.
    """

    def __init__(
        self,
        client: RedisClient,
        timing: Timing,
        on_message: Callable[[Any, bytes], None],
        on_gap: Callable[[Sequence[Any]], None],
    ) -> None:
        cluster = client.cluster
        if cluster is None:
            raise TypeError("ClusterPubSub needs a Redis Cluster client (broker.cluster_nodes)")
        self._client = client
        self._cluster: RedisCluster = cluster
        self._timing = timing
        self._on_message = on_message
        self._on_gap = on_gap
        self._shards: dict[str, PubSubShard] = {}  # master "host:port" -> its shard
        self._keys: dict[bytes, Hashable] = {}  # every held Redis channel -> caller's key
        self._route: dict[bytes, str] = {}  # held channel -> master it is subscribed on
        self._check: set[bytes] = set()  # channels to re-route (dropped, or not placed yet)
        self._check_all = False
        # Nodes whose own view is asked before a channel is placed on them:
        # they ended a subscription by themselves, or a shard reconnected to them.
        self._suspects: set[str] = set()
        # Moved channels not reported yet: reported before the first message of
        # their new subscription, so nothing it delivers can precede the gap.
        self._moving: set[Hashable] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = False  # the slot map is loaded
        self._connects: dict[str, int] = defaultdict(int)
        self._closed_reconnects = 0
        self.settled = asyncio.Event()
        self.moves = 0  # channels moved to another master (for tests and logs)

    @property
    def healthy(self) -> bool:
        return self._ready and not self._check and all(shard.healthy for shard in self._shards.values())

    @property
    def reconnects(self) -> int:
        return self._closed_reconnects + sum(shard.reconnects for shard in self._shards.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-cluster-pubsub")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            while not task.done():  # see PubSubShard.close
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
        shards, self._shards = list(self._shards.values()), {}
        await asyncio.gather(*(shard.close() for shard in shards))
        self._ready = False

    def hold(self, name: bytes, key: Hashable) -> None:
        """Hold ``name`` from now on without waiting (placed once the slot map is known)."""
        self._keys[name] = key
        if self._ready:
            self._place(name).hold(name, key)
        else:
            self._check.add(name)

    async def subscribe(self, name: bytes, key: Hashable) -> None:
        """Hold ``name`` on the master of its slot; returns once that master confirmed it."""
        if not self._ready:
            raise BrokerUnavailable("the Redis Cluster slot map is not loaded")
        self._keys[name] = key
        shard = self._place(name)
        try:
            await self._settle(shard)
            await shard.subscribe(name, key)
        except BaseException:
            if self._route.get(name) == self._address_of(shard):
                self._keys.pop(name, None)
                self._route.pop(name, None)
            raise

    def unsubscribe(self, name: bytes) -> None:
        self._keys.pop(name, None)
        self._check.discard(name)
        address = self._route.pop(name, None)
        if address is not None and address in self._shards:
            self._shards[address].unsubscribe(name)

    # -- routing ------------------------------------------------------------------

    def _owner(self, name: bytes) -> str:
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(name))
        except (RedisError, RedisClusterException) as exc:
            raise BrokerUnavailable(f"Redis Cluster: {exc}") from exc
        return str(node.name)

    def _place(self, name: bytes) -> PubSubShard:
        address = self._owner(name)
        self._route[name] = address
        return self._shard(address)

    def _shard(self, address: str) -> PubSubShard:
        shard = self._shards.get(address)
        if shard is None:
            shard = self._shards[address] = PubSubShard(
                address, lambda: self._connect(address), SHARDED, self._timing, self._message, self._gap
            )
            shard.start()
        return shard

    async def _settle(self, shard: PubSubShard) -> None:
        """Wait (bounded) for a shard's first connection attempt: a new one is not connected yet."""
        if not shard.settled.is_set():
            try:
                async with asyncio.timeout(self._timing.confirm_timeout):
                    await shard.settled.wait()
            except TimeoutError:
                raise BrokerUnavailable("Redis Cluster: no pub/sub connection to the slot's master yet") from None

    def _address_of(self, shard: PubSubShard) -> str | None:
        return next((address for address, s in self._shards.items() if s is shard), None)

    def _connect(self, address: str) -> Connection:
        """A new connection for the shard of ``address``; a reconnect also re-checks the slot map."""
        self._connects[address] += 1
        if self._connects[address] > 1:
            self._check_all = True
            self._suspects.add(address)
            self._wake.set()
        return self._client.node_connection(
            address, _SlotConnection, on_dropped=lambda name: self._dropped(address, name))

    def _dropped(self, address: str, name: bytes) -> None:
        self._suspects.add(address)
        if name in self._keys:
            log.info("Redis Cluster: the slot of %r moved; subscribing on its new master", name)
            # Still held by the old master's shard (which would subscribe it there
            # again on a reconnect): the re-route takes it off that shard first.
            self._check.add(name)
            self._wake.set()

    def _gap(self, keys: Sequence[Any]) -> None:
        self._moving.difference_update(keys)
        self._on_gap(keys)

    def _message(self, key: Any, payload: bytes) -> None:
        if key in self._moving:
            self._gap([key])
        self._on_message(key, payload)

    # -- the supervisor: loads the slot map and re-routes -----------------------------

    async def _run(self) -> None:
        attempt = 0
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._reroute()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Redis Cluster: cannot re-route pub/sub: %s", exc)
                self._wake.set()
                await asyncio.sleep(self._timing.backoff(attempt))
                attempt += 1
            if not self.settled.is_set():
                await asyncio.gather(*(shard.settled.wait() for shard in list(self._shards.values())))
                self.settled.set()
            if self._check:
                # Some channel could not be placed yet: try again after a pause.
                await asyncio.sleep(self._timing.backoff(attempt))
                attempt += 1
                self._wake.set()

    async def _reroute(self) -> None:
        try:
            async with asyncio.timeout(2 * self._client.settings.socket_timeout):
                if self._ready:
                    await self._cluster.nodes_manager.initialize()
                else:
                    await self._cluster.initialize()  # the client's own start (its command table too)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise BrokerUnavailable(f"Redis Cluster slot map: {exc}") from exc
        first = not self._ready
        self._ready = True
        masters = {str(node.name) for node in self._cluster.nodes_manager.get_nodes_by_server_type("primary")}
        for address in masters:
            self._shard(address)  # connected up front, so a first subscribe does not wait for it
        names = set(self._keys) if self._check_all or first else self._check & set(self._keys)
        self._check_all = False
        # Only those about to hold a channel are asked (a lost master may take a
        # connect timeout to not answer).
        targets = {self._owner(name) for name in names}
        suspects, self._suspects = self._suspects & targets, set()
        views = await self._views(suspects)
        moved: list[tuple[bytes, Hashable, PubSubShard]] = []
        for name in names:
            key = self._keys.get(name)
            if key is None:
                continue  # unsubscribed while the suspects were asked
            old, new = self._route.get(name), self._owner(name)
            view = views.get(new)
            if view is not None and view.get(key_slot(name)) != new:
                # The map is staler than the node it names (which serves no such slot).
                corrected = await self._correct(name, view)
                if corrected is None:  # nobody serves it in that view either: placed in a later round
                    if old is not None and old in self._shards:
                        self._shards[old].unsubscribe(name)
                    self._route.pop(name, None)
                    self._check.add(name)
                    self._suspects.update(views)
                    continue
                new = corrected
            if old == new and name not in self._check:
                continue
            if old is not None and old in self._shards:
                self._shards[old].unsubscribe(name)
            self._check.discard(name)
            if first and old is None:
                self._place(name).hold(name, key)  # the start: no gap to report
            else:
                moved.append((name, key, self._place(name)))
        if moved:
            async def move(name: bytes, key: Hashable, shard: PubSubShard) -> None:
                await self._settle(shard)
                self._moving.add(key)
                try:
                    await shard.subscribe(name, key)
                except BaseException:
                    self._moving.discard(key)
                    raise

            results = await asyncio.gather(*(move(*m) for m in moved), return_exceptions=True)
            confirmed = []
            for (name, key, _), result in zip(moved, results):
                if isinstance(result, BaseException):
                    self._route.pop(name, None)
                    self._check.add(name)  # placed again in the next round
                else:
                    confirmed.append(key)
            self.moves += len(confirmed)
            if confirmed:
                log.warning("Redis Cluster: %d channel(s) moved to another master", len(confirmed))
            unreported = [key for key in confirmed if key in self._moving]
            if unreported:
                self._gap(unreported)
        await self._close_gone(masters)

    async def _views(self, addresses: set[str]) -> dict[str, dict[int, str]]:
        """Each node's own slot map (slot -> master); a node that does not answer is left out."""
        views: dict[str, dict[int, str]] = {}
        for address in addresses:
            connection = self._client.node_connection(address, Connection)
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                await connection.send_command("CLUSTER", "NODES")
                masters = slot_masters(await connection.read_response())
            except (RedisError, OSError) as exc:
                log.info("Redis Cluster: cannot ask %s for its slots: %s", address, exc)
                continue
            finally:
                await connection.disconnect(nowait=True)
            # Named as the slot map names nodes (CLUSTER SLOTS, remapped).
            names = {master: self._node_name(master, connection.host) for master in set(masters.values())}
            views[address] = {slot: names[master] for slot, master in masters.items()}
        return views

    def _node_name(self, address: str, default_host: str) -> str:
        host, _, port = address.rpartition(":")
        host, remapped_port = self._cluster.nodes_manager.remap_host_port(host or default_host, int(port))
        return get_node_name(host, remapped_port)

    async def _correct(self, name: bytes, view: dict[int, str]) -> str | None:
        """Route ``name``'s slot to its master in ``view``, as a ``-MOVED`` from there would."""
        slot = key_slot(name)
        master = view.get(slot)
        if master is None:
            return None
        await self._cluster.nodes_manager.move_slot(MovedError(f"{slot} {master}"))
        new = self._owner(name)
        return new if new == master else None

    async def _close_gone(self, masters: set[str]) -> None:
        """Close the shards of nodes that are no longer masters and hold nothing."""
        used = set(self._route.values())
        for address in [a for a in self._shards if a not in used and a not in masters]:
            shard = self._shards.pop(address)
            self._closed_reconnects += shard.reconnects
            self._connects.pop(address, None)
            await shard.close()


def slot_masters(nodes: bytes | str) -> dict[int, str]:
    """Slot -> ``host:port`` of its master, from a ``CLUSTER NODES`` reply (the answering node's view)."""
    text = nodes.decode() if isinstance(nodes, bytes) else nodes
    masters: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split()
        flags = fields[2].split(",") if len(fields) > 2 else []
        if len(fields) < 8 or "master" not in flags or "fail" in flags:
            continue
        address = fields[1].split("@", 1)[0]
        for entry in fields[8:]:
            if entry.startswith("["):
                continue  # a slot being imported or migrated: its owner is listed as usual
            start, _, end = entry.partition("-")
            for slot in range(int(start), int(end or start) + 1):
                masters[slot] = address
    return masters
